"""Plans: pure functions from a Model (and the deployment's instance states) to a step graph."""

from orch.plan.lifecycle import cancel_plan, deploy_plan, undeploy_plan
from orch.plan.steps import Instance, Link, Plan, Step
from orch.plan.workflow import WorkflowError, workflow_plan

__all__ = [
    "Instance",
    "Link",
    "Plan",
    "Step",
    "WorkflowError",
    "cancel_plan",
    "deploy_plan",
    "undeploy_plan",
    "workflow_plan",
]
