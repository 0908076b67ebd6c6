"""scikit-ued's own tests for image (but calibration), io and baseline pass against uedflow."""

import skued_conformance  # tests/ is on sys.path under pytest's default import mode


def test_skued_test_suites_pass_against_uedflow():
    assert skued_conformance.run(skued_conformance.DEFAULT_TESTS, ["-x"]) == 0


def test_imports_are_switched_to_uedflow():
    source = ("from skued import align, kinematicsim\n"
              "from skued.baseline import (\n    dtcwt,\n    idtcwt,\n)\n")
    rewritten = skued_conformance.rewrite(source, "uedflow")
    assert "from uedflow import align\n" in rewritten
    assert "from skued import kinematicsim\n" in rewritten
    assert "from uedflow import dtcwt, idtcwt\n" in rewritten
    assert "skued.baseline" not in rewritten
