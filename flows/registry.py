"""Every flow of the program and its deployment, in one list."""

from __future__ import annotations

from typing import Any

from prefect import Flow

from flows.activity_plans import activity_plans
from flows.committee_feedback import committee_feedback
from flows.deadline_watch import deadline_watch_deployment
from flows.follow_up import follow_up
from flows.operational_plans import operational_plans
from flows.planning_prerequisites import planning_prerequisites
from flows.preparation import preparation
from flows.regional_plan import regional_plan
from flows.sign_receipt import sign_receipt

PHASE_FLOWS: dict[str, Flow[..., Any]] = {
    "preparation": preparation,
    "planning_prerequisites": planning_prerequisites,
    "committee_feedback": committee_feedback,
    "regional_plan": regional_plan,
    "operational_plans": operational_plans,
    "activity_plans": activity_plans,
    "follow_up": follow_up,
}
OTHER_FLOWS: dict[str, Flow[..., Any]] = {"sign_receipt": sign_receipt}


def deployment_name(flow_obj: Flow[..., Any]) -> str:
    """'<flow>/<deployment>': each deployment is named after its flow."""
    return f"{flow_obj.name}/{flow_obj.name}"


def deployments() -> list[Any]:
    out = []
    for f in [*PHASE_FLOWS.values(), *OTHER_FLOWS.values()]:
        out.append(f.to_deployment(name=f.name, description=f.description, tags=["styrkedja"]))
    out.append(deadline_watch_deployment())  # daily at 06:00 Europe/Stockholm
    return out
