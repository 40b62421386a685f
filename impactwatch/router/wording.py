"""Business words for alerts, from the catalog first and the alert's annotations second. Pure.

Every function returns Slack mrkdwn that is already escaped: catalog titles, labels and
annotations go through `escape.text`/`escape.code`; only our own markup is left as markup.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from impactwatch.catalog.model import Catalog
from impactwatch.contract import alerts
from impactwatch.router import escape as esc
from impactwatch.router.bounds import printable
from impactwatch.router.model import AlertState, Incident
from impactwatch.router.routing import Lineage, Subject

HEADLINES = {
    alerts.FRESHNESS: "out of date",
    alerts.DEADLINE: "late: deadline missed",
    alerts.DURATION: "running too long",
    alerts.FAILURE: "pipeline run failed",
    alerts.PREDICTED: "will likely be late",
}
EMOJI = {alerts.CRITICAL: ":red_circle:", alerts.WARNING: ":large_orange_circle:"}
SUPPRESSED = "silenced or inhibited in Alertmanager"


def human(seconds: float) -> str:
    """45 s, 42 min, 1 h 30 min, 2 d 3 h: for people, not parsers."""
    total = round(max(seconds, 0))
    if total < 60:
        return f"{total} s"
    minutes = total // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def sentence(text: str) -> str:
    """First letter up, the rest untouched (ids and `<!date…>` tokens keep their case)."""
    return text[:1].upper() + text[1:]


def title(lineage: Lineage, subject: Subject) -> str:
    """Escaped name people know the subject by."""
    if subject.kind == "dataset":
        return esc.text(esc.clip(lineage.title(subject), 150))
    if subject.kind == "dag":
        return f"Pipeline {esc.code(subject.name, 150)}"
    return esc.text(esc.clip(subject.name, 150))


def main_alert(incident: Incident) -> AlertState | None:
    """The alert that names the problem: on the incident's own subject, most severe, oldest."""
    states = list(incident.alerts.values())
    if not states:
        return None
    return min(
        states,
        key=lambda a: (
            a.subject_key != incident.key,
            a.status != "firing",
            -alerts.SEVERITY_RANK.get(a.severity, 0),
            a.kind == alerts.PREDICTED,  # the breach, once it comes, names the problem
            a.starts_at,
            a.fingerprint,
        ),
    )


def headline(lineage: Lineage, incident: Incident) -> str:
    """ "Customer risk scores — out of date", escaped."""
    alert = main_alert(incident)
    name = title(lineage, incident.subject)
    if alert is None:
        return name
    phrase = HEADLINES.get(alert.kind)
    if phrase is None:
        summary = alert.annotations.get("summary") or alert.alertname
        if incident.subject.kind in ("rule", "component"):
            return esc.text(esc.clip(summary, 150))
        return f"{name} — {esc.text(esc.clip(summary, 120))}"
    return f"{name} — {phrase}"


def problem(catalog: Catalog, alert: AlertState, now: float) -> str:
    """How bad and since when, for one alert: age against its limit, how late."""
    subject = alert.subject
    since = esc.date(alert.starts_at)
    if alert.status == "suppressed":
        return f"{SUPPRESSED} (firing since {since})"
    if alert.kind == alerts.PREDICTED:
        return predicted_problem(catalog, alert, since)
    if alert.status == "resolved":
        took = human((alert.ends_at or now) - alert.starts_at)
        return f"recovered after {took} (from {since})"
    if not printable(alert.starts_at):  # clamped where it entered: no age to compute from it
        summary = alert.annotations.get("summary")
        text = esc.text(esc.clip(summary, 300)) if summary else esc.text(alert.alertname)
        return f"{text}, started {since}"
    open_for = now - alert.starts_at
    if alert.labels.get(alerts.SOURCE) == alerts.LEARNED:
        return learned_problem(alert, since)
    if alert.kind == alerts.FRESHNESS and subject.kind == "dataset":
        dataset = catalog.datasets.get(subject.name)
        if dataset is not None and dataset.freshness:
            age = dataset.freshness + open_for
            good = esc.date(alert.starts_at - dataset.freshness)
            return (
                f"at least {human(age)} old against a limit of {human(dataset.freshness)}: "
                f"last good update {good} or earlier"
            )
    dag = alert.labels.get(alerts.DAG_ID) or (subject.name if subject.kind == "dag" else "")
    pipeline = catalog.pipelines.get(dag)
    if alert.kind == alerts.DURATION and pipeline is not None and pipeline.max_duration:
        runtime = pipeline.max_duration + open_for
        return (
            f"run going for at least {human(runtime)} against a limit of "
            f"{human(pipeline.max_duration)}; over since {since}"
        )
    if alert.kind == alerts.DEADLINE and pipeline is not None and pipeline.deadline:
        return (
            f"missed its {esc.text(pipeline.deadline)} deadline; "
            f"{human(open_for)} late so far (since {since})"
        )
    if alert.kind == alerts.FAILURE:
        return f"latest run failed; failing since {since}"
    summary = alert.annotations.get("summary") or alert.annotations.get("description")
    text = esc.text(esc.clip(summary, 300)) if summary else esc.text(alert.alertname)
    return f"{text} (since {since})"


def learned_problem(alert: AlertState, since: str) -> str:
    """An alert on a threshold learned from history (no limit in the catalog): the rule's
    summary ("... usually updated by 06:40 UTC"), and where the limit came from."""
    summary = alert.annotations.get("summary")
    text = esc.text(esc.clip(summary, 300)) if summary else esc.text(alert.alertname)
    return f"{text} (since {since}); limit learned from history: set one in the catalog to fix it"


def predicted_problem(catalog: Catalog, alert: AlertState, since: str) -> str:
    """A predicted miss, from the times its rule's annotations carry: "Customer risk scores
    will likely be ~40 min late: `risk_scoring` is at `score_customers`, 35 min behind its
    usual pace; expected 07:40, limit 07:00 (UTC)"; resolved without the breach: caught up."""
    if alert.status == "resolved":
        return f"caught up: no longer expected late (warned from {since})"
    notes = alert.annotations
    expected, due = _epoch(notes.get(alerts.EXPECTED_AT)), _epoch(notes.get(alerts.DUE_AT))
    if expected is None or due is None:
        summary = notes.get("summary")
        text = esc.text(esc.clip(summary, 300)) if summary else esc.text(alert.alertname)
        return f"{text} (since {since})"
    name = alert.subject.name
    dataset = catalog.datasets.get(name)
    what = esc.text(esc.clip(dataset.title if dataset is not None else name, 150))
    dag = esc.code(alert.labels.get(alerts.DAG_ID, ""), 150)
    task = notes.get(alerts.TASK_ID, "")
    where = f"is at {esc.code(task, 150)}" if task else "has not started"
    behind = _number(notes.get(alerts.BEHIND))
    pace = f", {human(behind)} behind its usual pace" if behind is not None and behind > 0 else ""
    return (
        f"{what} will likely be ~{human(expected - due)} late: {dag} {where}{pace}; "
        f"expected {_clock(expected)}, limit {_clock(due)} (UTC)"
    )


def _number(text: str | None) -> float | None:
    """A number an annotation carries (Alertmanager's input: anything else is None)."""
    try:
        value = float(text or "")
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _epoch(text: str | None) -> float | None:
    value = _number(text)
    return value if value is not None and printable(value) else None


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M")


def producer(catalog: Catalog, lineage: Lineage, subject: Subject) -> str | None:
    """ "Produced by `risk_scoring.publish_scores`", or the data products a pipeline makes."""
    if subject.kind == "dataset":
        dataset = catalog.datasets.get(subject.name)
        if dataset is not None and dataset.produced_by is not None:
            return f"Produced by {esc.code(str(dataset.produced_by), 300)}"
        return None
    if subject.kind == "dag":
        made = sorted(lineage.datasets_of(subject))
        if made:
            names = ", ".join(title(lineage, Subject("dataset", n)) for n in made[:10])
            more = f" and {len(made) - 10} more" if len(made) > 10 else ""
            return f"Produces {names}{more}"
    return None


def description(catalog: Catalog, subject: Subject, alert: AlertState | None) -> str | None:
    """What the subject means to the business: the catalog's words, else the alert's."""
    if subject.kind == "dataset":
        dataset = catalog.datasets.get(subject.name)
        if dataset is not None and dataset.description:
            return esc.text(esc.clip(dataset.description, 500))
    if alert is not None and alert.annotations.get("description"):
        return esc.text(esc.clip(alert.annotations["description"], 500))
    return None


def upstream(catalog: Catalog, lineage: Lineage, subject: Subject) -> str | None:
    """ "Built from Market prices, FX rates": where to look for a root cause."""
    names: set[str] = set()
    for name in lineage.datasets_of(subject):
        dataset = catalog.datasets.get(name)
        if dataset is not None:
            names.update(dataset.upstream)
    if not names:
        return None
    shown = sorted(names)[:10]
    text = ", ".join(title(lineage, Subject("dataset", n)) for n in shown)
    more = f" and {len(names) - 10} more" if len(names) > 10 else ""
    return f"Built from {text}{more}"
