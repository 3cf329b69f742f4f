#!/usr/bin/env python3
"""Side-by-side speed and memory: libedgeattn against llama.cpp on the same model and machine.

Not part of CI (it builds llama.cpp, about 10 minutes, then runs about 12 with --reps 3). Run it on an
otherwise idle machine:

    python3 Tests/bench/vs_llamacpp.py [--reps 3] [--out bench-vs-llamacpp.md]

What it does:
  1. installs the PyPI package llama-cpp-python (which builds llama.cpp from source) into a virtual
     environment under ~/.cache/edgeattn/llamacpp-venv (outside the repository);
  2. makes llama.cpp's Q2_K and Q4_0 variants of SmolLM2-135M-Instruct from the Q4_1 source file
     (llama_model_quantize, --allow-requantize) and our W2A8KV4 conversion (the README's best mix);
  3. measures, alternating the engines inside every repetition, each case in a fresh process:
     prefill tokens/s at 128 and 512 tokens, decode tokens/s at cache depths 0, 1024 and 4096, at 1
     and 2 threads (depth 4096 at 2 threads only unless --full), and the peak resident memory of that
     process (ours: peak RSS; llama.cpp: peak RSS minus the Python interpreter's). Ours runs dense attention everywhere, and Λ (4 sinks + 1020 window)
     and DHSA (25% budget) at the long depths;
  4. writes a Markdown table: median [min-max] per engine and case, and the ratio of the medians
     ours / llama.cpp's (Q2_K and Q4_0), with the date and the machine.

llama.cpp is timed through its low-level API (llama_decode; logits of the last token only; the next
token is the argmax, as ours), not through Llama.eval(), which copies every logit to numpy.
"""
import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("EA_CACHE", Path.home() / ".cache" / "edgeattn"))
VENV = CACHE / "llamacpp-venv"
LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"
CLI = ROOT / ".build" / "release" / "edgeattn"
TEXT = ("The quick brown fox jumps over the lazy dog while the old king counts his gold in the tower. ")


# ---------------------------------------------------------------- llama.cpp worker (venv python)
def llama_worker(a):
    import numpy as np
    import llama_cpp as L

    L.llama_backend_init()
    base = status_kib("VmRSS")  # the interpreter and libraries, before the model
    mp = L.llama_model_default_params()
    model = L.llama_model_load_from_file(a.model.encode(), mp)
    if not model:
        raise SystemExit("cannot load " + a.model)
    n_tok = a.prompt + a.gen + 8
    cp = L.llama_context_default_params()
    cp.n_ctx = n_tok
    cp.n_batch = 512
    cp.n_ubatch = 512
    cp.n_threads = a.threads
    cp.n_threads_batch = a.threads
    ctx = L.llama_init_from_model(model, cp)
    vocab = L.llama_model_get_vocab(model)
    n_vocab = L.llama_vocab_n_tokens(vocab)
    text = (TEXT * (a.prompt // 8 + 8)).encode()
    buf = (L.llama_token * (len(text) + 8))()
    n = L.llama_tokenize(vocab, text, len(text), buf, len(buf), False, False)
    toks = list(buf[:a.prompt])
    assert len(toks) == a.prompt, (n, a.prompt)
    batch = L.llama_batch_init(512, 0, 1)

    def run(tokens, pos0, want_last):
        batch.n_tokens = len(tokens)
        for i, t in enumerate(tokens):
            batch.token[i] = t
            batch.pos[i] = pos0 + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = 1 if (want_last and i == len(tokens) - 1) else 0
        rc = L.llama_decode(ctx, batch)
        if rc != 0:
            raise SystemExit("llama_decode returned %d" % rc)

    t0 = time.perf_counter()
    for s in range(0, len(toks), 512):
        part = toks[s:s + 512]
        run(part, s, s + len(part) == len(toks))
    t1 = time.perf_counter()
    logits = np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
    nxt = int(np.argmax(logits))
    pos = len(toks)
    t2 = time.perf_counter()
    for _ in range(a.gen):
        run([nxt], pos, True)
        pos += 1
        logits = np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
        nxt = int(np.argmax(logits))
    t3 = time.perf_counter()
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)
    print(json.dumps({"prefill_tps": a.prompt / (t1 - t0), "decode_tps": a.gen / (t3 - t2),
                      "peak_bytes": (status_kib("VmHWM") - base) * 1024}))


def status_kib(field):
    m = re.search(r"^%s:\s+(\d+) kB" % field, Path("/proc/self/status").read_text(), re.M)
    return int(m.group(1))


def llama_quantize(src, dst, ftype):
    import ctypes
    import llama_cpp as L
    p = L.llama_model_quantize_default_params()
    p.ftype = ftype
    p.allow_requantize = True
    p.nthread = 2
    tmp = dst + ".tmp"
    rc = L.llama_model_quantize(src.encode(), tmp.encode(), ctypes.byref(p))
    if rc != 0:
        raise SystemExit("llama_model_quantize failed: %d" % rc)
    os.replace(tmp, dst)


# ---------------------------------------------------------------- driver (system python)
def sh(cmd, **kw):
    print("+ " + " ".join(str(c) for c in cmd), file=sys.stderr)
    subprocess.run([str(c) for c in cmd], check=True, **kw)


def llama_cmake_args():
    """llama.cpp is built for this CPU (-march=native), except where the CPU has Intel AMX: its AMX
    matmul crashes (SIGSEGV in ggml_backend_amx_mul_mat) in VMs that do not grant the tile state (met
    on a Xeon VM, 2026-12-03), and -march=native cannot be had without it, so there every other
    feature the CPU reports (AVX2, FMA, F16C, AVX-512, VNNI) is switched on by name instead."""
    flags = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").exists() else set()
    if "amx_tile" not in flags:
        return "-DGGML_NATIVE=ON"
    named = {"GGML_AVX": "avx", "GGML_AVX2": "avx2", "GGML_FMA": "fma", "GGML_F16C": "f16c", "GGML_BMI2": "bmi2",
             "GGML_AVX_VNNI": "avx_vnni", "GGML_AVX512": "avx512f", "GGML_AVX512_VBMI": "avx512vbmi",
             "GGML_AVX512_VNNI": "avx512_vnni", "GGML_AVX512_BF16": "avx512_bf16"}
    return " ".join(["-DGGML_NATIVE=OFF"] + ["-D%s=%s" % (k, "ON" if f in flags else "OFF") for k, f in named.items()])


def setup():
    py = VENV / "bin" / "python"
    if not py.exists():
        sh([sys.executable, "-m", "venv", VENV])
    r = subprocess.run([py, "-c", "import llama_cpp, numpy"], capture_output=True)
    if r.returncode != 0:
        print("== building llama.cpp (llama-cpp-python from PyPI, about 10 minutes)", file=sys.stderr)
        sh([py, "-m", "pip", "install", "-q", "--no-cache-dir", "--force-reinstall", "--no-binary", "llama-cpp-python",
            "numpy", LLAMA_CPP_PYTHON], env=dict(os.environ, CMAKE_ARGS=llama_cmake_args()))
    if not CLI.exists():
        sh(["swift", "build", "-c", "release", "--product", "edgeattn"], cwd=ROOT)
    src = subprocess.run(["bash", ROOT / "examples" / "fetch-model.sh", "smollm2"], check=True,
                         capture_output=True, text=True).stdout.strip()
    models = {"Q4_1": src}
    for name, ftype in (("Q2_K", 10), ("Q4_0", 2)):
        dst = str(Path(src).with_name("SmolLM2-135M-Instruct.llamacpp-%s.gguf" % name))
        if not Path(dst).exists():
            sh([py, __file__, "--quantize", src, dst, str(ftype)])
        models[name] = dst
    # the README's best mix, as examples/demo.sh makes it (the recipe lives in fetch-model.sh)
    w2 = subprocess.run(["bash", ROOT / "examples" / "fetch-model.sh", "w2a8kv4"], check=True,
                        stdout=subprocess.PIPE, text=True).stdout.strip()
    models["W2A8KV4"] = w2
    return py, models


def spawn(cmd):
    """Runs cmd in a child process; returns (its last output line as JSON, the peak memory in MiB it
    reports: ours the peak RSS before its bandwidth probe's buffer, llama.cpp's the peak RSS minus
    the Python interpreter's RSS before the model was loaded)."""
    r_out, w_out = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(w_out, 1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(r_out)
        try:
            os.execv(str(cmd[0]), [str(c) for c in cmd])
        finally:
            os._exit(127)
    os.close(w_out)
    chunks = []
    while True:
        b = os.read(r_out, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r_out)
    _, status = os.waitpid(pid, 0)
    out = b"".join(chunks).decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("failed (%d): %s\n%s" % (os.waitstatus_to_exitcode(status), " ".join(map(str, cmd)), out[-2000:]))
    js = json.loads(out.strip().splitlines()[-1])
    return js, js["peak_bytes"] / 1048576.0


POLICIES = {"dense": [], "lambda": ["--attn", "lambda", "--sinks", "4", "--window", "1020"],
            "dhsa": ["--attn", "dhsa", "--budget-frac", "0.25"]}


def cases(full):
    out = []
    for t in (1, 2):
        for p in (128, 512):
            out.append(("prefill", p, t, "dense"))
        for d in (0, 1024, 4096):
            if d == 4096 and t == 1 and not full:
                continue
            for pol in (("dense", "lambda", "dhsa") if d >= 1024 else ("dense",)):
                out.append(("decode", d, t, pol))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--gen", type=int, default=32, help="tokens decoded per decode measurement")
    ap.add_argument("--full", action="store_true", help="also depth 4096 at 1 thread")
    ap.add_argument("--out", default="bench-vs-llamacpp.md")
    ap.add_argument("--quantize", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model"), ap.add_argument("--threads", type=int), ap.add_argument("--prompt", type=int)
    a = ap.parse_args()
    if a.quantize:
        return llama_quantize(a.quantize[0], a.quantize[1], int(a.quantize[2]))
    if a.worker:
        return llama_worker(a)
    py, models = setup()
    res = {}  # (engine, case) -> list of (tps, rss)
    todo = cases(a.full)
    for rep in range(a.reps):
        for (kind, n, t, pol) in todo:
            prompt = n if kind == "prefill" else max(n, 1)
            gen = 1 if kind == "prefill" else a.gen
            key = "prefill_tps" if kind == "prefill" else "decode_tps"
            runs = []
            if pol == "dense":
                for q in ("Q2_K", "Q4_0"):
                    runs.append(("llama.cpp " + q, [py, __file__, "--worker", "--model", models[q], "--threads", t,
                                                    "--prompt", prompt, "--gen", gen]))
            runs.append(("ours W2A8KV4 " + pol, [CLI, "bench", "-m", models["W2A8KV4"], "-t", t, "--prompt", prompt,
                                                 "--gen", gen, "--reps", 1] + POLICIES[pol]))
            if rep % 2 == 1:
                runs.reverse()  # alternate which engine goes first
            for eng, cmd in runs:
                js, rss = spawn(cmd)
                res.setdefault((eng, kind, n, t), []).append((js[key], rss))
                print("rep %d %-22s %-7s %4d t%d: %7.1f tok/s  %6.1f MiB" % (rep, eng, kind, n, t, js[key], rss),
                      file=sys.stderr, flush=True)
    write_table(res, a, models)


def cpu_name():
    try:
        m = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
        return m.group(1).strip() if m else platform.processor()
    except OSError:
        return platform.processor()


def fmt(v):
    xs = [x for x, _ in v]
    return "%.1f [%.1f-%.1f]" % (statistics.median(xs), min(xs), max(xs))


def write_table(res, a, models):
    lines = ["Measured %s on %s (%d cores), %d repetitions alternating the engines, each case a fresh "
             "process; tokens/s median [min-max]; ratio = our median / theirs; memory = peak RSS MiB of "
             "that process (median; llama.cpp's minus the Python interpreter's RSS before the model loads)." % (datetime.date.today().isoformat(), cpu_name(), os.cpu_count(), a.reps),
             "",
             "| case | threads | llama.cpp Q2_K | llama.cpp Q4_0 | ours W2A8KV4 | ours / Q2_K | ours / Q4_0 | "
             "MiB Q2_K / Q4_0 / ours |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    seen = []
    for (eng, kind, n, t) in res:
        if (kind, n, t) not in seen:
            seen.append((kind, n, t))
    for (kind, n, t) in seen:
        q2 = res.get(("llama.cpp Q2_K", kind, n, t))
        q4 = res.get(("llama.cpp Q4_0", kind, n, t))
        for pol in ("dense", "lambda", "dhsa"):
            ours = res.get(("ours W2A8KV4 " + pol, kind, n, t))
            if not ours:
                continue
            med = statistics.median(x for x, _ in ours)
            label = ("prefill %d" % n) if kind == "prefill" else ("decode at depth %d" % n)
            if pol != "dense":
                label += {"lambda": ", ours Λ 4+1020", "dhsa": ", ours DHSA 25%"}[pol]
            mem = " / ".join("%.0f" % statistics.median(r for _, r in v) if v else "-" for v in (q2, q4, ours))
            lines.append("| %s | %d | %s | %s | %s | %s | %s | %s |" % (
                label, t, fmt(q2) if q2 else "-", fmt(q4) if q4 else "-", fmt(ours),
                "%.2fx" % (med / statistics.median(x for x, _ in q2)) if q2 else "-",
                "%.2fx" % (med / statistics.median(x for x, _ in q4)) if q4 else "-", mem))
    text = "\n".join(lines) + "\n"
    tmp = a.out + ".tmp"
    Path(tmp).write_text(text)
    os.replace(tmp, a.out)
    print(text)
    print("models: " + ", ".join("%s=%s" % kv for kv in models.items()), file=sys.stderr)


if __name__ == "__main__":
    main()
