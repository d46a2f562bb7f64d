"""Page faults and CPU time of a meta-step with glibc's default malloc vs
``maml.cpu_allocator.keep_freed_memory`` (what ``build_learner`` applies on CPU).

ConvNet sparse-MAML 5-way 5-shot at the paper's image size and 15 queries, meta-batch 2,
--steps inner steps (default 5). Each setting runs in its own process (the malloc
setting is process-wide); one JSON line per (engine, setting):

    python bench/malloc_faults.py                    # both engines, ~3 min on 2 cores
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(engine, keep, steps, repeats):
    sys.path.insert(0, REPO)
    import maml.cpu_allocator as allocator
    if not keep:
        allocator._state["applied"] = False         # build_learner then leaves malloc alone
    from bench.meta_step import build, parse_args, synthetic_batch
    argv = ["--method", "sparse-maml", "--batch_size", "2", "--num_shots_train", "5",
            "--num_ways", "5", "--num_shots_test", "15", "--gradient_steps", str(steps),
            "--gradient_steps_test", str(steps), "--seed", "0", "--dont_use_cuda",
            "--engine", engine]
    learner = build(parse_args(argv))
    batch = synthetic_batch(2, 5, 5, 15, 3, 84, "cpu")
    learner.step(batch)                             # warm: the heap grows once either way
    before, cpu = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
    for _ in range(repeats):
        learner.step(batch)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {"engine": engine, "malloc": "keep_freed_memory" if keep else "glibc default",
            "applied": allocator.keep_freed_memory() if keep else False,
            "inner_steps": steps, "minor_faults_per_meta_step":
                (after.ru_minflt - before.ru_minflt) // repeats,
            "cpu_s_per_meta_step": round((time.process_time() - cpu) / repeats, 2),
            "system_cpu_s_per_meta_step": round((after.ru_stime - before.ru_stime) / repeats, 2),
            "load_average_1m": round(os.getloadavg()[0], 2)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engines", nargs="+", default=["reference", "fast"])
    p.add_argument("--steps", type=int, default=5, help="inner steps (default: 5)")
    p.add_argument("--repeats", type=int, default=3, help="timed meta-steps (default: 3)")
    p.add_argument("--out", default=None, help="also append the JSON lines to this file")
    p.add_argument("--child", nargs=2, metavar=("ENGINE", "KEEP"), help=argparse.SUPPRESS)
    opts = p.parse_args()
    if opts.child:
        print(json.dumps(measure(opts.child[0], opts.child[1] == "1", opts.steps,
                                 opts.repeats)))
        return
    for engine in opts.engines:
        for keep in ("0", "1"):
            out = subprocess.run([sys.executable, __file__, "--child", engine, keep,
                                  "--steps", str(opts.steps), "--repeats", str(opts.repeats)],
                                 check=True, capture_output=True, text=True).stdout
            row = out.strip().splitlines()[-1]
            print(row, flush=True)
            if opts.out:
                with open(opts.out, "a") as f:
                    f.write(row + "\n")


if __name__ == "__main__":
    main()
