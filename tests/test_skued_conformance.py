"""scikit-ued's own tests for image (but calibration), io and baseline pass against uedflow."""


import skued_conformance  # tests/ is on sys.path under pytest's default import mode


def test_skued_test_suites_pass_against_uedflow():
    assert skued_conformance.run(skued_conformance.DEFAULT_TESTS, ["-x"]) == 0


def test_every_image_io_baseline_test_file_of_skued_is_run():
    root = skued_conformance.skued_root()
    found = {path.relative_to(root).as_posix().replace("/tests/", "/")
             for area in ("image", "io", "baseline") for path in (root / area).rglob("test_*.py")}
    assert found - {"image/test_calibration.py"} == set(skued_conformance.DEFAULT_TESTS)


def test_imports_are_switched_to_uedflow():
    source = ("from skued import align, kinematicsim\n"
              "from skued.baseline import (\n    dtcwt,\n    idtcwt,\n)\n")
    rewritten = skued_conformance.rewrite(source, "uedflow")
    assert "from uedflow import align\n" in rewritten
    assert "from skued import kinematicsim\n" in rewritten
    assert "from uedflow import dtcwt, idtcwt\n" in rewritten
    assert "skued.baseline" not in rewritten


#: Every name of scikit-ued's frame API that uedflow carries (issue: frame kernels).
DROP_IN = """diffread dmread mibread imibread mibheader align ialign itrack_peak autocenter
auto_masking nfold reflection azimuthal_average bragg_peaks bragg_peaks_persistence
brillouin_zones mask_from_collection combine_masks mask_image isnr snr_from_collection triml
trimr baseline_dwt baseline_dt dtcwt idtcwt dt_max_level dt_first_stage available_dt_filters
available_first_stage_filters""".split()


def test_uedflow_exports_every_drop_in_name():
    import skued.baseline

    import uedflow

    for name in DROP_IN:
        assert callable(getattr(uedflow, name)), name
        assert hasattr(skued, name) or hasattr(skued.baseline, name), name
    assert uedflow.brilluoin_zones is uedflow.brillouin_zones

