"""Per-student summaries: activity, videos, problems and grade of one student in one course.

The figures come from the other modules through the injected ``query`` object
(``student_activity``, ``student_videos``, ``student_problems``, ``get_grades``), so their
rules apply here unchanged.

With authentication on (``INSIGHTS_AUTH=on``), give a student a token that locks ``user``
(``python -m tasks tokens create ada --allow 'view:student_view' --allow
'query:student_summary' --lock user=ada``): no query string, form, JSON body or chain step
can then change ``user``, so the student sees their own summary only. Allow a student
these names only: course-wide queries such as ``get_grades`` take no ``user`` to lock.
"""

from tasks import query, render, view

LABELS = {
    "events": "Events",
    "active_days": "Active days",
    "videos_watched": "Videos watched",
    "watched_minutes": "Minutes of video watched",
    "problems_attempted": "Problems attempted",
    "problems_solved": "Problems solved",
    "grade": "Grade (%)",
}


@query()
def student_summary(query, user, course):
    """One student's summary in a course: events, active_days, videos_watched, watched_minutes,
    problems_attempted, problems_solved and grade (percent; None without any graded submission)."""
    summary = {"user": user, "course": course}
    summary.update(query.student_activity(user, course))
    summary.update(query.student_videos(user, course))
    summary.update(query.student_problems(user, course))
    grades = query.get_grades(course)
    summary["grade"] = float(grades[user]) if user in grades.index else None
    return summary


def display(value):
    """A summary value as table text: floats to one decimal, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


@view()
def student_view(query, user, course):
    """One student's summary in a course as a small HTML table (autoescaped template)."""
    summary = query.student_summary(user, course)
    rows = [(label, display(summary[key])) for key, label in LABELS.items()]
    return render("summary.html", {"user": user, "course": course, "rows": rows})
