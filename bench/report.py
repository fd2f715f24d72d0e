#!/usr/bin/python3
"""Joins the output of bench/ops.c and bench/ops_torch.py into Markdown tables (see bench/run.sh).

    report.py C_OUTPUT TORCH_OUTPUT

Ratios are torch time / hsconas time, so > 1 means hsconas is faster; for the same FLOP count that equals
the ratio of the GFLOP/s columns. Exit status 1 when the two sides disagree on a FLOP count (the formulas
in ops.c and ops_torch.py drifted apart) or when an instance is missing from the C side.
"""
import sys

PW_TARGET = 0.80  # pointwise conv vs one cblas_sgemm of the same size (DESIGN.md §6)
DW_TARGET = 2.0  # depthwise fwd+bwd vs torch at fmnist shapes


def parse(path):
    """Returns (comment lines, {(space, id): fields}, [sgemm fields]) of one side's output."""
    notes, rows, sgemm = [], {}, []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("#"):
                notes.append(line[1:].strip())
                continue
            if not line.startswith("op="):
                continue
            fields = dict(tok.split("=", 1) for tok in line.split())
            if fields["op"] == "sgemm":
                sgemm.append(fields)
            else:
                rows[(fields["space"], fields["id"])] = fields
    return notes, rows, sgemm


def num(fields, key):
    return float(fields[key]) if fields and key in fields else None


def fmt(v, spec=".1f"):
    return "-" if v is None else format(v, spec)


def ratio(torch_s, c_s):
    return None if torch_s is None or c_s is None or c_s <= 0 else torch_s / c_s


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: report.py C_OUTPUT TORCH_OUTPUT")
    c_notes, c_rows, c_sgemm = parse(sys.argv[1])
    t_notes, t_rows, _ = parse(sys.argv[2])
    problems = []

    print("## Libraries\n")
    for n in c_notes + t_notes:
        print(f"- {n}")
    for g in c_sgemm:
        print(f"- cblas_sgemm {g['shape'].replace(',', ' ')}, {g['threads']} OpenBLAS threads: "
              f"{float(g['gflops']):.1f} GFLOP/s ({float(g['ms']):.2f} ms)")

    print("\n## Operators\n")
    print("GFLOP/s by the formulas in bench/ops.c; ratio = torch time / hsconas time (> 1: hsconas faster).\n")
    print("| op | space | id | shape | C fwd ms | C bwd ms | C fwd GF/s | C bwd GF/s | torch fwd GF/s "
          "| torch bwd GF/s | ratio fwd | ratio bwd | ratio fwd+bwd |")
    print("|---|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    dw_results, pw_results = [], []
    for key in list(t_rows) + [k for k in c_rows if k not in t_rows]:
        c, t = c_rows.get(key), t_rows.get(key)
        base = c or t
        if c is None:
            problems.append(f"{key[0]} {key[1]}: no hsconas measurement")
        if c and t:
            for k in ("fwd_flop", "bwd_flop"):
                if c[k] != t[k]:
                    problems.append(f"{key[0]} {key[1]}: {k} differs (c {c[k]}, torch {t[k]})")
        cf, cb = num(c, "fwd_ms"), num(c, "bwd_ms")
        tf, tb = num(t, "fwd_ms"), num(t, "bwd_ms")
        rf, rb = ratio(tf, cf), ratio(tb, cb)
        rt = ratio(tf + tb, cf + cb) if None not in (cf, cb, tf, tb) else None
        print(f"| {base['op']} | {key[0]} | {key[1]} | {base['shape']} | {fmt(cf, '.3f')} | {fmt(cb, '.3f')} "
              f"| {fmt(num(c, 'fwd_gflops'))} | {fmt(num(c, 'bwd_gflops'))} | {fmt(num(t, 'fwd_gflops'))} "
              f"| {fmt(num(t, 'bwd_gflops'))} | {fmt(rf, '.2f')} | {fmt(rb, '.2f')} | {fmt(rt, '.2f')} |")
        if base["op"] == "depthwise" and key[0] == "fmnist":
            dw_results.append((key[1], rt))
        if base["op"] == "pointwise" and c and "sgemm_gflops" in c:
            pw_results.append((key, c))

    print("\n## Pointwise conv vs cblas_sgemm of the same size\n")
    print("The same product as one GEMM (M = cout, K = cin, N = n*hw), cblas_sgemm with the same threads.\n")
    print("| space | id | M x K x N | sgemm GF/s | pointwise fwd GF/s | fwd % of sgemm | pointwise bwd GF/s "
          "| bwd % of sgemm |")
    print("|---|---|---|--:|--:|--:|--:|--:|")
    pw_fwd_met = 0
    for (space, ident), c in pw_results:
        sg = float(c["sgemm_gflops"])
        kv = dict(p.split("=") for p in c["shape"].split(","))
        mkn = f"{kv['cout']} x {kv['cin']} x {int(kv['n']) * int(kv['hw'])}"
        pf, pb = float(c["fwd_gflops"]) / sg, float(c["bwd_gflops"]) / sg
        pw_fwd_met += pf >= PW_TARGET
        print(f"| {space} | {ident} | {mkn} | {sg:.1f} | {float(c['fwd_gflops']):.1f} | {100 * pf:.0f}% "
              f"| {float(c['bwd_gflops']):.1f} | {100 * pb:.0f}% |")

    print("\n## Targets\n")
    print(f"- pointwise fwd >= {100 * PW_TARGET:.0f}% of sgemm at the same size: "
          f"{pw_fwd_met} of {len(pw_results)} instances")
    met = [i for i, r in dw_results if r is not None and r >= DW_TARGET]
    missed = [f"{i} ({fmt(r, '.2f')}x)" for i, r in dw_results if r is None or r < DW_TARGET]
    print(f"- depthwise fwd+bwd >= {DW_TARGET:.0f}x torch at fmnist shapes: {len(met)} of {len(dw_results)} "
          f"instances" + (f"; below: {', '.join(missed)}" if missed else ""))
    if problems:
        print("\n## Problems\n")
        for p in problems:
            print(f"- {p}")
        sys.exit(1)


if __name__ == "__main__":
    main()
