"""Course grades from graded problem submissions (replaces the test module's dummy ``get_grades``).

A student's grade is a percentage (0-100): the sum over the course's problems of their
best score, divided by the sum of every problem's max score. Every problem seen in the
course (submitted by anyone) counts, so a problem a student never tried adds 0 to their
sum and its max score to the divisor. Only students with at least one submission have a
grade. The scores come from the problems module (``query.problem_scores``).
"""

import numpy
import pandas as pd
from matplotlib.figure import Figure

from tasks import memoize_query, query, view
from tasks.errors import ArgumentError


def grades_from_scores(scores):
    """Percent grades (a Series indexed by student, sorted) from per (student, problem) best scores."""
    if scores.empty:
        return pd.Series([], dtype=float, name="grade", index=pd.Index([], dtype=object, name="student"))
    total = scores.groupby("problem")["max_score"].max().sum()
    earned = scores.groupby("student")["best_score"].sum(min_count=1).fillna(0.0)
    grades = earned.astype(float) * 100.0 / total if total > 0 else earned.astype(float) * 0.0
    return grades.sort_index().rename("grade").rename_axis("student")


@memoize_query(cache_time=60)
@query()
def get_grades(query, course):
    """Each student's grade in a course, in percent (0-100): a pandas Series indexed by student.

    Sum of the student's best score per problem over the sum of the problems' max scores
    (see the module doc); memoized for 60 s. Feeds the ``histogram`` view in a chain.
    """
    return grades_from_scores(query.problem_scores(course))


@view()
def plot_grades(query, course):
    """Histogram of a course's grades (the original README's example), as a plot; notes when there are none."""
    grades = numpy.asarray(query.get_grades(course), dtype=float).ravel()
    figure = Figure(figsize=(6, 3.5))
    axes = figure.add_subplot()
    axes.set_title(f"Histogram of grades in {course}")
    axes.set_xlabel("grade (%)")
    axes.set_ylabel("students")
    if grades.size == 0:
        axes.set_xlim(0, 100)
        axes.text(50, 0.5, "no grades yet", ha="center", va="center", fontsize=14, color="#777777")
        return figure
    axes.hist(grades, bins=20, range=(0, 100), color="#3b7dd8", edgecolor="white")
    return figure


@view()
def histogram(values, title="Histogram"):
    """A histogram of any numbers (e.g. fed by get_grades in a chain, or typed as "1, 2.5, 3"), as a plot."""
    if isinstance(values, str):
        try:
            values = [float(v) for v in values.replace(";", ",").split(",") if v.strip()]
        except ValueError:
            raise ArgumentError(f"values must be numbers separated by commas, got {values!r}") from None
    figure = Figure(figsize=(6, 3.5))
    axes = figure.add_subplot()
    axes.hist(numpy.asarray(values, dtype=float).ravel(), bins=40, color="#3b7dd8")
    axes.set_title(title)
    return figure
