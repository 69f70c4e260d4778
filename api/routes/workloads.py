"""``/v1/workloads``: what workers can train (the registry's entry points)."""

from __future__ import annotations

from fastapi import APIRouter

from api.schemas import WorkloadPublic, WorkloadsPublic
from tuner import workloads

router = APIRouter(prefix="/workloads", tags=["workloads"])


@router.get("", response_model=WorkloadsPublic, summary="The workloads jobs may name")
def list_workloads() -> WorkloadsPublic:
    """Name and description of every installed workload (loads them, so it imports torch)."""
    described = workloads.describe()
    return WorkloadsPublic(data=[WorkloadPublic(**w) for w in described], count=len(described))
