"""``/v1/jobs/{id}/lr-sweep.svg``: the LR range curve as an image, for notebooks and scripts."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api import charts
from api.deps import JobDep, SessionDep
from api.routes import results

router = APIRouter(prefix="/jobs", tags=["results"])
SVG_MEDIA_TYPE = "image/svg+xml"


@router.get(
    "/{job_id}/lr-sweep.svg",
    response_class=Response,
    responses={200: {"content": {SVG_MEDIA_TYPE: {}}, "description": "an SVG document"}},
    summary="The LR range curve as SVG",
)
def lr_sweep_svg(job: JobDep, session: SessionDep) -> Response:
    """Smoothed loss against lr (log axis), the suggestions and the searched range marked.

    404 (JSON, saying why) while the sweep has not run, exactly like ``/lr-sweep``."""
    sweep = results.get_lr_sweep(job, session)
    svg = charts.lr_curve_svg(sweep.lrs, sweep.smoothed, sweep.suggestions, sweep.lr_range)
    return Response(content=svg, media_type=SVG_MEDIA_TYPE)
