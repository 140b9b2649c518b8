"""Graded problems: attempts, students, first-try correctness and score distributions.

The handler keeps one record per ``answered`` event (a graded submission), keyed by the
event id and written with ``$setOnInsert`` (redelivery changes nothing); the queries
compute with pandas from those records.

Rules:

- a submission is *correct* when its ``success`` is true; when it carries no ``success``,
  when its ``score`` reaches its ``max_score``;
- a student's *first try* on a problem is their submission with the lowest ``attempt``
  number (submissions without a number come after numbered ones; ties by time);
  ``first_try_correct`` is the fraction of a problem's students whose first try was correct;
- a student's *best score* on a problem is the highest ``score`` of their submissions; a
  problem's ``max_score`` is the highest ``max_score`` any submission to it reported;
- a student has *solved* a problem when any of their submissions to it was correct.
"""

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from pymongo import UpdateOne

from tasks import event_handler, query, view

COLLECTION = "submissions"
RECORD_COLUMNS = ["problem", "agent", "timestamp", "success", "score", "max_score", "attempt"]
STATS_COLUMNS = ["problem", "attempts", "students", "first_try_correct", "solved", "mean_best_score", "max_score"]


@event_handler()
def record_submissions(mongodb, events):
    """Keep (problem, agent, timestamp, success, score, max_score, attempt) of every graded submission."""
    writes = [_record(evt) for evt in events if evt.verb == "answered" and evt.course and evt.object]
    if writes:
        mongodb[COLLECTION].bulk_write(writes, ordered=False)


def _record(evt):
    """The idempotent upsert of one submission's record."""
    result = evt.result or {}
    success = result.get("success")
    fields = {"course": evt.course, "problem": evt.object, "agent": evt.agent, "timestamp": evt.timestamp}
    fields["success"] = bool(success) if success is not None else None
    fields.update({name: _number(result.get(name)) for name in ("score", "max_score", "attempt")})
    return UpdateOne({"_id": evt.id}, {"$setOnInsert": fields}, upsert=True)


def _number(value):
    """A float, or None when the value is missing or not a number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def submissions(mongodb, course, user=None):
    """A course's submissions (optionally one user's), with a ``correct`` column, in time order."""
    selector = {"course": course} if user is None else {"course": course, "agent": user}
    docs = list(mongodb[COLLECTION].find(selector, {"_id": 0, "course": 0}))
    frame = pd.DataFrame(docs, columns=RECORD_COLUMNS)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame[["score", "max_score", "attempt"]] = frame[["score", "max_score", "attempt"]].astype(float)
    reached = (frame["score"] >= frame["max_score"]).fillna(False)
    frame["correct"] = frame["success"].astype(object).where(frame["success"].notna(), reached).astype(bool)
    return frame.sort_values("timestamp", kind="stable").reset_index(drop=True)


def first_tries(frame):
    """Each (problem, student)'s first try: the lowest attempt number, then the earliest."""
    ordered = frame.assign(order=frame["attempt"].fillna(np.inf)).sort_values(["order", "timestamp"], kind="stable")
    return ordered.groupby(["problem", "agent"], sort=False).head(1)


def best_scores(frame):
    """Per (student, problem): ``best_score``, the problem's ``max_score`` and ``solved``."""
    if frame.empty:
        return pd.DataFrame(columns=["student", "problem", "best_score", "max_score", "solved"])
    per_pair = frame.groupby(["agent", "problem"]).agg(best_score=("score", "max"), solved=("correct", "any"))
    per_pair = per_pair.reset_index().rename(columns={"agent": "student"})
    maxima = frame.groupby("problem")["max_score"].max()
    per_pair["max_score"] = per_pair["problem"].map(maxima)
    return per_pair[["student", "problem", "best_score", "max_score", "solved"]]


def stats_table(frame):
    """The per-problem statistics of ``problem_stats``."""
    if frame.empty:
        return pd.DataFrame(columns=STATS_COLUMNS)
    grouped = frame.groupby("problem")
    table = grouped.agg(attempts=("agent", "size"), students=("agent", "nunique"), max_score=("max_score", "max"))
    table["first_try_correct"] = first_tries(frame).groupby("problem")["correct"].mean()
    best = best_scores(frame).groupby("problem")
    table["solved"] = best["solved"].mean()
    table["mean_best_score"] = best["best_score"].mean()
    return table.reset_index()[STATS_COLUMNS]


@query()
def problem_stats(mongodb, course):
    """Per problem of a course: attempts (submissions), students, first_try_correct and solved (fractions of
    its students), mean_best_score and max_score (see the module doc for the rules)."""
    return stats_table(submissions(mongodb, course))


@query()
def score_distribution(mongodb, course, problem):
    """How many students have each best score on one problem: columns ``score``, ``students``."""
    frame = submissions(mongodb, course)
    best = best_scores(frame[frame["problem"] == problem])
    counts = best["best_score"].dropna().value_counts().sort_index()
    return pd.DataFrame({"score": counts.index.astype(float), "students": counts.to_numpy(dtype=int)})


@query()
def problem_scores(mongodb, course):
    """Per student and problem of a course: best_score, the problem's max_score and solved (what grades use)."""
    return best_scores(submissions(mongodb, course))


@query()
def student_problems(mongodb, user, course):
    """One student's problems in a course: ``problems_attempted`` and ``problems_solved``."""
    best = best_scores(submissions(mongodb, course, user))
    return {"problems_attempted": len(best), "problems_solved": int(best["solved"].sum())}


def short_label(problem, width=18):
    """A problem id shortened for an axis: its last segment, cut to ``width`` characters."""
    tail = str(problem).rstrip("/").rsplit("/", 1)[-1].rsplit("@", 1)[-1]
    return tail if len(tail) <= width else tail[: width - 1] + "…"


@view()
def problems_plot(mongodb, course):
    """First-try correctness and share of students who solved it (bars), per problem of a course."""
    table = stats_table(submissions(mongodb, course))
    figure = Figure(figsize=(8, 4))
    axes = figure.add_subplot()
    axes.set_title(f"Problems in {course}")
    if table.empty:
        axes.text(0.5, 0.5, "no submissions yet", ha="center", va="center", transform=axes.transAxes)
        return figure
    x = np.arange(len(table))
    axes.bar(x - 0.2, table["first_try_correct"], width=0.4, color="#3b7dd8", label="correct on first try")
    axes.bar(x + 0.2, table["solved"], width=0.4, color="#3bd87d", label="solved")
    axes.set_xticks(x, [short_label(p) for p in table["problem"]], rotation=45, fontsize=7)
    axes.set_ylabel("fraction of students")
    axes.set_ylim(0, 1.05)
    axes.legend(fontsize=7)
    figure.tight_layout()
    return figure
