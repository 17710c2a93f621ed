"""The benchmarks measure against a reference path in the same run, take ``--threads``, name their machine and
label what they measure: each script runs at its ``--tiny`` size, in this process (a subprocess would spend
seconds importing torch again), with its printed lines checked.
"""

import re
import runpy
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def run_benchmark(monkeypatch, capsys):
    """run(script, *flags) -> its stdout; the process's torch thread count is restored afterwards."""
    threads = torch.get_num_threads()
    monkeypatch.syspath_prepend(str(BENCHMARKS))

    def run(script: str, *flags: str) -> str:
        monkeypatch.setattr(sys, "argv", [script, *flags])
        runpy.run_path(str(BENCHMARKS / script), run_name="__main__")
        return capsys.readouterr().out

    yield run
    torch.set_num_threads(threads)


def test_sampling_speed_times_the_official_steps_beside_its_sampler(run_benchmark):
    out = run_benchmark("sampling_speed.py", "--tiny", "--batch", "2", "--repeats", "2", "--threads", "1", "--decode")
    assert re.search(r"^machine: .+, 1 CPU threads, torch .+float32 matmul peak", out, re.MULTILINE)
    assert re.search(r"^B=2: loop .+ tokens/s, .+ GFLOP/s .+ decode .+ s, peak memory .+ GiB", out, re.MULTILINE)
    reference = re.search(
        r"^  reference call best .+ x1\.00 vs reference .+ tokens equal to reference 100\.0%", out, re.M
    )
    assert reference, out
    # Float32 ScaleSampler draws the official sampler's tokens and decodes them to the same images, bit for bit.
    ours = re.search(r"^  nextscale call best .+ img/s  x[\d.]+ vs reference .+ GFLOP/s \(.+\)  peak .+", out, re.M)
    assert ours, out
    assert ours.group(0).endswith("tokens equal to reference 100.0%, images bit-identical")


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the script would run its d16 model")
def test_cuda_graph_speed_applies_threads_before_it_asks_for_a_gpu(run_benchmark):
    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        run_benchmark("cuda_graph_speed.py", "--threads", "1")
    assert torch.get_num_threads() == 1


def test_a_thread_count_below_one_is_a_usage_error(run_benchmark, capsys):
    with pytest.raises(SystemExit) as stopped:
        run_benchmark("cuda_graph_speed.py", "--threads", "0")
    assert stopped.value.code == 2
    assert "--threads: needs a positive whole number of CPU threads, got '0'" in capsys.readouterr().err


def test_exact_kernel_options_says_why_it_skips_the_column_halves_and_times_whole_calls(run_benchmark):
    out = run_benchmark("exact_kernel_options.py", "--tiny", "--repeats", "1", "--threads", "1")
    assert re.search(r"^machine: .+, 1 threads, torch ", out, re.MULTILINE)
    assert "column halves: skipped (needs PyTorch's MKL and exactly 2 threads; this run has 1)" in out
    assert re.search(
        r"^all linear products of a tiny preset B = 1 call: MKL .+ s, packed weights .+ s \(.+x, saving "
        r".+ s\); bit-identical from 8 rows on: (True|False), at 2 rows: (True|False)$",
        out,
        re.MULTILINE,
    )
    assert "the decoder's convolutions (one 16 px decode): NCHW" in out
    out = run_benchmark("exact_kernel_options.py", "--tiny", "--repeats", "1", "--threads", "1", "--end-to-end")
    assert re.search(
        r"^end to end, exact path, B = 1 .+, 1 calls each: plain weights best .+ s, mean .+ s; packed weights best "
        r".+ s, mean .+ s \(.+x best, .+x mean\); images bit-identical: (True|False)$",
        out,
        re.MULTILINE,
    )


# The eager CPU flex is what this test checks is labelled (PyTorch warns that it is unfused).
@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_attention_mask_speed_labels_cpu_flex_as_the_eager_fallback(run_benchmark):
    out = run_benchmark("attention_mask_speed.py", "--tiny", "--batch", "1", "--steps", "1", "--threads", "1")
    assert re.search(r"^machine: .+, 1 CPU threads", out, re.MULTILINE)
    assert re.search(r"^dense \(ref\): .+ s/step best, .+ peak memory .+ GiB", out, re.MULTILINE)
    assert re.search(r"^flex \(eager on CPU: not the compiled kernel\): .+ s/step best", out, re.MULTILINE)
    assert not re.search(r"^flex:", out, re.MULTILINE)  # never an unlabelled CPU flex figure
    assert "flex (eager on CPU: not the compiled kernel) speed-up over dense: " in out


def test_the_cpu_is_named_with_the_instruction_sets_that_decide_its_fast_paths(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from machine import CPU_FLAGS, machine_name

    name = machine_name(torch.device("cpu"))
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("names the CPU from /proc/cpuinfo (Linux)")
    text = cpuinfo.read_text(errors="replace")
    model = next(line.partition(":")[2].strip() for line in text.splitlines() if line.startswith("model name"))
    flags = next(line.partition(":")[2].split() for line in text.splitlines() if line.startswith("flags"))
    assert name.startswith(model)
    for flag in CPU_FLAGS:  # each flag this CPU has is named, no other
        assert (re.search(rf"[(; ,]{flag}[,)]", name) is not None) == (flag in flags), flag
