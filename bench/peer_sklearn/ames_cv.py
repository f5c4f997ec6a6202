#!/usr/bin/env python3
"""bench/peer_sklearn/ames_cv.py AMES_CSV [--folds K] [--seed S] [--max-iter N]

The peer for bench/ml.sh: scikit-learn's HistGradientBoostingRegressor cross-validated on the Ames
CSV with the same rows, features, target and folds as `hearth train` (src/domain/pricing.c), so
the two RMSLE figures compare the learners and nothing else.

Mirrors hearth exactly:
  * rows: every data row, in CSV order (hearth imports all 2930 and trains ORDER BY id);
  * the CSV is read the way src/domain/import.c reads it: an unquoted value that is a JSON number
    is a number, an unquoted NA is missing, anything else (every quoted value) is a string;
  * features: the 7 listing fields as import.c derives them (size_sqft = Gr_Liv_Area, bedrooms =
    Bedroom_AbvGr, bathrooms = Full_Bath + Half_Bath/2, year_built = Year_Built, lot_size_sqft =
    Lot_Area, latitude, longitude), then every CSV column but Sale_Price, Longitude, Latitude,
    Gr_Liv_Area, Year_Built, Lot_Area, Bedroom_AbvGr, in CSV order; a column is categorical when
    any of its values is a string (its non-string values are then missing, as in hearth);
  * target: log(Sale_Price); metric per fold: sqrt(mean((log1p(y) - log1p(exp(pred)))^2)), the
    mean over folds reported;
  * folds: Fisher-Yates shuffle of 0..n-1 driven by splitmix64(seed), fold[perm[k]] = k % K.

Categoricals go to the model as ordinal codes (sorted category order, as hearth's) with
categorical_features=mask: native categorical splits. scikit-learn 1.2 needs codes < max_bins
(255); a column with more categories keeps the 254 most frequent and merges the rest into one.

Last line: RESULT rmsle_mean=... rmsle_folds=a,b,c,d,e rows=N features=F categorical=C secs=T
"""
import argparse
import math
import sys
import time

import numpy as np
import sklearn
from sklearn.ensemble import HistGradientBoostingRegressor

EXCLUDED = {"Sale_Price", "Longitude", "Latitude", "Gr_Liv_Area", "Year_Built", "Lot_Area", "Bedroom_AbvGr"}
CORE = ["size_sqft", "bedrooms", "bathrooms", "year_built", "lot_size_sqft", "latitude", "longitude"]
MASK64 = (1 << 64) - 1
MAX_CODES = 254


def parse_line(line):
    """One CSV record (R's write.csv: no embedded newlines) -> [(text, quoted)]."""
    out, i, n = [], 0, len(line)
    while True:
        if i < n and line[i] == '"':
            i += 1
            buf = []
            while i < n:
                c = line[i]
                if c == '"':
                    if i + 1 < n and line[i + 1] == '"':
                        buf.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                buf.append(c)
                i += 1
            out.append(("".join(buf), True))
            # skip to the separator
            while i < n and line[i] != ",":
                i += 1
        else:
            j = line.find(",", i)
            j = n if j < 0 else j
            out.append((line[i:j], False))
            i = j
        if i >= n:
            break
        i += 1  # the comma
        if i == n:
            out.append(("", False))
            break
    return out


def json_number(s):
    """import.c's json_number_text: is s a number in JSON's grammar?"""
    import re
    return re.fullmatch(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?", s) is not None


def value_of(text, quoted):
    """The value hearth stores in `features`: float, None (missing) or str."""
    if not quoted and json_number(text):
        return float(text)
    if not quoted and text == "NA":
        return None
    return text


def read_ames(path):
    with open(path, encoding="utf-8", newline="") as f:
        lines = [ln.rstrip("\r\n") for ln in f if ln.strip()]
    header = [t for t, _ in parse_line(lines[0])]
    rows = []
    for ln in lines[1:]:
        fields = parse_line(ln)
        if len(fields) != len(header):
            sys.exit(f"ames_cv: a row has {len(fields)} fields where the header has {len(header)}")
        rows.append({h: value_of(t, q) for h, (t, q) in zip(header, fields)})
    return header, rows


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return state, z ^ (z >> 31)


def assign_folds(n, folds, seed):
    perm = list(range(n))
    state = seed & MASK64
    for i in range(n - 1, 0, -1):
        state, r = splitmix64(state)
        j = r % (i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    fold = [0] * n
    for k in range(n):
        fold[perm[k]] = k % folds
    return np.array(fold)


def build_matrix(header, rows):
    n = len(rows)
    cols = [h for h in header if h not in EXCLUDED]
    X = np.full((n, len(CORE) + len(cols)), np.nan)
    for i, r in enumerate(rows):
        X[i, 0] = r["Gr_Liv_Area"]
        X[i, 1] = r["Bedroom_AbvGr"]
        X[i, 2] = r["Full_Bath"] + r["Half_Bath"] / 2.0
        X[i, 3] = r["Year_Built"]
        X[i, 4] = r["Lot_Area"]
        X[i, 5] = r["Latitude"]
        X[i, 6] = r["Longitude"]
    cat_mask = [False] * len(CORE)
    merged = []
    for c, name in enumerate(cols):
        vals = [r[name] for r in rows]
        categorical = any(isinstance(v, str) for v in vals)
        cat_mask.append(categorical)
        j = len(CORE) + c
        if not categorical:
            X[:, j] = [np.nan if v is None else v for v in vals]
            continue
        cats = sorted({v for v in vals if isinstance(v, str)})
        code = {v: k for k, v in enumerate(cats)}
        if len(cats) > MAX_CODES:  # keep the most frequent, merge the rest (sklearn 1.2 limit)
            counts = {}
            for v in vals:
                if isinstance(v, str):
                    counts[v] = counts.get(v, 0) + 1
            keep = sorted(sorted(counts, key=lambda v: -counts[v])[:MAX_CODES - 1])
            code = {v: k for k, v in enumerate(keep)}
            other = len(keep)
            code = {v: code.get(v, other) for v in cats}
            merged.append(f"{name} ({len(cats)} categories)")
        X[:, j] = [code[v] if isinstance(v, str) else np.nan for v in vals]
    y = np.log(np.array([r["Sale_Price"] for r in rows], dtype=float))
    return X, y, CORE + cols, np.array(cat_mask), merged


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--max-iter", type=int, default=1000)
    ap.add_argument("--learning-rate", type=float, default=0.05)
    a = ap.parse_args()

    t0 = time.monotonic()
    header, rows = read_ames(a.csv)
    X, y, names, mask, merged = build_matrix(header, rows)
    fold = assign_folds(len(rows), a.folds, a.seed)
    print(f"peer: scikit-learn {sklearn.__version__} HistGradientBoostingRegressor, {len(rows)} rows, "
          f"{X.shape[1]} features ({int(mask.sum())} categorical, native), {a.folds} folds, seed {a.seed}, "
          f"max_iter={a.max_iter}, learning_rate={a.learning_rate}")
    if merged:
        print("peer: rare categories merged in: " + ", ".join(merged))
    scores = []
    for f in range(a.folds):
        tr, te = fold != f, fold == f
        m = HistGradientBoostingRegressor(max_iter=a.max_iter, learning_rate=a.learning_rate,
                                          early_stopping=False, categorical_features=mask,
                                          random_state=42)
        m.fit(X[tr], y[tr])
        p = m.predict(X[te])
        rmsle = math.sqrt(np.mean((np.log1p(np.exp(y[te])) - np.log1p(np.exp(p))) ** 2))
        scores.append(rmsle)
        print(f"peer fold {f + 1}/{a.folds}: rows {int(te.sum())}  rmsle {rmsle:.4f}", flush=True)
    mean = sum(scores) / len(scores)
    print(f"RESULT rmsle_mean={mean:.4f} rmsle_folds={','.join(f'{s:.4f}' for s in scores)} "
          f"rows={len(rows)} features={X.shape[1]} categorical={int(mask.sum())} "
          f"secs={time.monotonic() - t0:.1f}")


if __name__ == "__main__":
    main()
