"""hybridnb's device paths end to end, through the checks ``benchmarks/gpu_check.py`` runs
(:func:`hybridnb.train.devicecheck.run_device_check`): ``fit`` on the device, its bundle
served on loopback, the endpoint's accuracy against the run's.

On a GPU: NCCL ranks, fp32, fp16 with GradScaler and bf16 autocast, each checked. Without
one the ``gpu`` test skips, saying why, and the same checks run on the CPU path.
"""

from __future__ import annotations

import pytest
import torch

from hybridnb.train.devicecheck import run_device_check

CUDA = torch.cuda.is_available()


def assert_checked(report, precisions):
    assert [p.precision for p in report.paths] == list(precisions)
    assert report.ok, report.to_dict()
    for path in report.paths:
        assert (path.device, path.backend) == (("cuda", "nccl") if CUDA else ("cpu", "gloo"))
        assert path.endpoint_accuracy is not None
        assert abs(path.endpoint_accuracy - path.test_accuracy) <= 0.03
        assert path.test_accuracy >= 0.9


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="no CUDA GPU (torch.cuda.is_available() is False); "
                                     "test_device_check_on_this_machine covers the CPU path")
def test_cuda_paths_train_bundle_and_serve(tmp_path, hybridnb_home):
    report = run_device_check(tmp_path)
    assert report.cuda and report.device_name
    assert_checked(report, ("fp32", "fp16", "bf16"))
    fp16 = report.paths[1]
    assert fp16.ran == "fp16" and fp16.loss_scale is not None and fp16.loss_scale > 0
    assert report.paths[0].ranks == torch.cuda.device_count()


@pytest.mark.slow
def test_device_check_on_this_machine(tmp_path, hybridnb_home):
    # fp16: autocast and the GradScaler, the path with the most of hybridnb's own code.
    report = run_device_check(tmp_path, precisions=("fp16",), epochs=3)
    assert report.cuda is CUDA
    assert_checked(report, ("fp16",))
    (path,) = report.paths
    assert path.ran == "fp16" and path.loss_scale is not None and path.loss_scale > 0
    assert path.ranks == (torch.cuda.device_count() if CUDA else 2)
