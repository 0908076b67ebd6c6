"""Centre, symmetry and powder kernels: uedflow against scikit-ued (and pyFAI).

Cases: ``autocenter`` with the beam-block mask; ``nfold`` (6-fold, masked) through its plan
and as the drop-in function, both called repeatedly with the same mask (as over a stack: the
drop-in reuses its cached plan) and as a first call (cache emptied before each call);
``reflection``; ``azimuthal_average`` through its plan and as
the drop-in; and, if pyFAI is installed, the plan against pyFAI's CSR ``integrate1d`` on the
same frame (pyFAI's callable in the ``skued`` column).
"""

import skued
from _harness import Case, main_for

from uedflow.datasets import beam_block_mask, default_center, make_frame
from uedflow.image import symmetry
from uedflow.image.center import autocenter
from uedflow.image.powder import AzimuthalPlan, azimuthal_average
from uedflow.image.symmetry import NFoldPlan, nfold, reflection


def _pyfai_case(frame, mask, center_rc, plan):
    try:
        from pyFAI.integrator.azimuthal import AzimuthalIntegrator
    except ImportError:
        return []
    pixel = 1e-4
    integrator = AzimuthalIntegrator(
        dist=0.1, poni1=center_rc[0] * pixel, poni2=center_rc[1] * pixel,
        pixel1=pixel, pixel2=pixel,
    )
    npt = plan.nbins
    kwargs = {"mask": ~mask, "unit": "r_mm", "method": ("no", "csr", "cython")}
    integrator.integrate1d(frame, npt, **kwargs)  # builds and caches its CSR matrix
    return [Case("azimuthal plan vs pyFAI csr", uedflow=lambda: plan(frame),
                 skued=lambda: integrator.integrate1d(frame, npt, **kwargs),
                 note="(skued column = pyFAI integrate1d, CSR cached)")]


def _first_call(function, *args):
    """``function(*args)`` with the plan cache of ``nfold`` emptied first."""
    symmetry._plans.clear()
    return function(*args)


def cases(size):
    shape = (size, size)
    center_rc = default_center(shape)
    center_xy = center_rc[::-1]
    frame = make_frame(shape, center_rc, kind="mixed", seed=0).astype(float)
    mask = beam_block_mask(shape, center_rc)
    nfold_plan = NFoldPlan(shape, 6, center_xy, mask)  # one thread, as in stacks
    nfold_plan_threads = NFoldPlan(shape, 6, center_xy, mask, workers=-1)
    azimuthal_plan = AzimuthalPlan(shape, center_xy, mask)
    return [
        Case("autocenter (mask)", uedflow=lambda: autocenter(frame, mask=mask),
             skued=lambda: skued.autocenter(frame, mask=mask)),
        Case("nfold 6 (mask) plan", uedflow=lambda: nfold_plan(frame),
             skued=lambda: skued.nfold(frame, 6, center_xy, mask)),
        Case("nfold 6 (mask) plan, threads", uedflow=lambda: nfold_plan_threads(frame),
             skued=lambda: skued.nfold(frame, 6, center_xy, mask)),
        Case("nfold 6 (mask) drop-in", uedflow=lambda: nfold(frame, 6, center_xy, mask),
             skued=lambda: skued.nfold(frame, 6, center_xy, mask)),
        Case("nfold 6 (mask) drop-in, first call",
             uedflow=lambda: _first_call(nfold, frame, 6, center_xy, mask),
             skued=lambda: skued.nfold(frame, 6, center_xy, mask)),
        Case("nfold 6 (no mask) drop-in", uedflow=lambda: nfold(frame, 6, center_xy),
             skued=lambda: skued.nfold(frame, 6, center_xy)),
        Case("reflection (mask)", uedflow=lambda: reflection(frame, 30, None, mask),
             skued=lambda: skued.reflection(frame, 30, None, mask)),
        Case("azimuthal_average plan", uedflow=lambda: azimuthal_plan(frame),
             skued=lambda: skued.azimuthal_average(frame, center_xy, mask)),
        Case("azimuthal_average drop-in",
             uedflow=lambda: azimuthal_average(frame, center_xy, mask),
             skued=lambda: skued.azimuthal_average(frame, center_xy, mask)),
        *_pyfai_case(frame, mask, center_rc, azimuthal_plan),
    ]


if __name__ == "__main__":
    main_for(cases)
