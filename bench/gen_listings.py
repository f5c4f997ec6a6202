#!/usr/bin/python3
"""bench/gen_listings.py: N synthetic listings as JSON lines (for `hearth import FILE --format json`).

    /usr/bin/python3 bench/gen_listings.py [--rows 100000] [--seed 1] [--data data/demo] > listings.jsonl

Reads the demo CSVs (data/demo/ames.csv, data/demo/sacramento.csv) and maps each row the way
hearth's own importers do (src/domain/import.c: title, description, location, amenities, type,
and the whole CSV row as `features`), then writes rows 0, 1, ..., N-1 where row i is demo row
i mod 3,862 with jitter: price and size x U(0.85, 1.15), lot x U(0.9, 1.1), latitude/longitude
+ U(-0.01, 0.01) (the same jittered values are written into `features`). Every row has source
"bench" and a unique external_id "bench-<i>", so importing into an empty database gives ids
1..N in file order. Deterministic for a given seed. Standard library only.
"""
import argparse
import csv
import json
import os
import random
import sys

AMES_TYPES = {"OneFam": "single_family", "TwnhsE": "townhouse", "Twnhs": "townhouse",
              "Duplex": "multi_family", "TwoFmCon": "multi_family"}
AMES_STYLES = {"One_Story": "One Story", "Two_Story": "Two Story", "One_and_Half_Fin": "1.5 Story",
               "One_and_Half_Unf": "1.5 Story (unfinished upper)", "Two_and_Half_Fin": "2.5 Story",
               "Two_and_Half_Unf": "2.5 Story (unfinished upper)", "SLvl": "Split Level", "SFoyer": "Split Foyer"}
SAC_TYPES = {"Residential": ("single_family", "Residential", "residential property"),
             "Condo": ("condo", "Condo", "condo"),
             "Multi-Family": ("multi_family", "Multi-Family", "multi-family property"),
             "Multi_Family": ("multi_family", "Multi-Family", "multi-family property")}


def number(s):
    """CSV text -> int/float when it is a plain number (as the importer's features object does)."""
    try:
        return int(s)
    except ValueError:
        try:
            return float(s)
        except ValueError:
            return s


def humanise(s):
    return s.replace("_", " ")


def ames_rows(path):
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            t = AMES_TYPES.get(r["Bldg_Type"])
            if not t:
                continue
            yield "ames", r, t


def sac_rows(path):
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            t = SAC_TYPES.get(r["type"])
            if not t:
                continue
            yield "sacramento", r, t


def listing(kind, r, t, i, rnd):
    feat = {k: number(v) for k, v in r.items()}
    pf = rnd.uniform(0.85, 1.15)
    sf = rnd.uniform(0.85, 1.15)
    dlat = rnd.uniform(-0.01, 0.01)
    dlon = rnd.uniform(-0.01, 0.01)
    if kind == "ames":
        price = max(1000, round(int(r["Sale_Price"]) * pf))
        size = max(100, round(int(r["Gr_Liv_Area"]) * sf))
        lot = max(100, round(int(r["Lot_Area"]) * rnd.uniform(0.9, 1.1)))
        lat = round(float(r["Latitude"]) + dlat, 6)
        lon = round(float(r["Longitude"]) + dlon, 6)
        feat.update(Sale_Price=price, Gr_Liv_Area=size, Lot_Area=lot, Latitude=lat, Longitude=lon)
        beds = int(r["Bedroom_AbvGr"])
        baths = int(r["Full_Bath"]) + int(r["Half_Bath"]) / 2
        hood = humanise(r["Neighborhood"])
        style = AMES_STYLES.get(r["House_Style"], humanise(r["House_Style"]))
        am = [a for a, on in (("garage", int(r["Garage_Cars"]) > 0), ("pool", int(r["Pool_Area"]) > 0),
                              ("fireplace", int(r["Fireplaces"]) > 0), ("central_air", r["Central_Air"] == "Y"),
                              ("deck", int(r["Wood_Deck_SF"]) > 0), ("basement", int(r["Total_Bsmt_SF"]) > 0),
                              ("porch", sum(int(r[c]) for c in ("Open_Porch_SF", "Enclosed_Porch",
                                                                 "Three_season_porch", "Screen_Porch")) > 0)) if on]
        cars = int(r["Garage_Cars"])
        garage = f", with a {cars}-car garage" if cars > 0 else ", with no garage"
        built, remod = int(r["Year_Built"]), int(r["Year_Remod_Add"])
        rem = f" (remodelled {remod})" if remod > built + 1 else ""
        p = {
            "title": f"{beds}-bed {style} in {hood}" if beds > 0 else f"{style} in {hood}",
            "description": f"Built in {built}{rem}, {size:,} sq ft of living space on a {lot:,} sq ft lot{garage}. "
                           f"Overall condition: {humanise(r['Overall_Cond']).lower()}; last sold in {r['Year_Sold']}.",
            "price": price, "location": f"{hood}, Ames, IA", "city": "Ames", "state": "IA",
            "latitude": lat, "longitude": lon, "bedrooms": beds, "bathrooms": baths, "size_sqft": size,
            "lot_size_sqft": lot, "year_built": built, "amenities": am, "property_type": t, "status": "active",
        }
    else:
        ptype, words, noun = t
        price = max(1000, round(int(r["price"]) * pf))
        size = max(100, round(int(r["sqft"]) * sf)) if int(r["sqft"]) > 0 else 100
        lat = round(float(r["latitude"]) + dlat, 6)
        lon = round(float(r["longitude"]) + dlon, 6)
        feat.update(price=price, sqft=size, latitude=lat, longitude=lon)
        beds = int(r["beds"])
        baths = float(r["baths"])
        city = " ".join(w.capitalize() for w in r["city"].replace("_", " ").split())
        z = r["zip"].lstrip("zZ")
        p = {
            "title": f"{beds}-bed {words} in {city}",
            "description": f"A {beds}-bed, {baths:g}-bath, {size:,} sq ft {noun} in {city}, from the "
                          f"Sacramento Bee's record of 2008 sales.",
            "price": price, "location": f"{city}, CA {z}" if z else f"{city}, CA", "city": city, "state": "CA",
            "latitude": lat, "longitude": lon, "bedrooms": beds, "bathrooms": baths, "size_sqft": size,
            "property_type": ptype, "status": "active",
        }
        if z:
            p["zip"] = z
    p["features"] = feat
    p["source"] = "bench"
    p["external_id"] = f"bench-{i}"
    return p


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "demo"))
    a = ap.parse_args()
    base = list(ames_rows(os.path.join(a.data, "ames.csv"))) + list(sac_rows(os.path.join(a.data, "sacramento.csv")))
    if not base:
        sys.exit("no demo rows found")
    rnd = random.Random(a.seed)
    out = sys.stdout
    for i in range(a.rows):
        kind, r, t = base[i % len(base)]
        out.write(json.dumps(listing(kind, r, t, i, rnd), separators=(",", ":")))
        out.write("\n")
    print(f"gen_listings: {a.rows} rows from {len(base)} demo rows (seed {a.seed})", file=sys.stderr)


if __name__ == "__main__":
    main()
