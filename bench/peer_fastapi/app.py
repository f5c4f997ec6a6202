"""bench/peer_fastapi/app.py: the peer for bench/postgres.sh.

The seeds' stack: FastAPI + psycopg2 with pooled connections, served by uvicorn (one worker
process per core). It implements GET /api/properties with hearth's filters on the same PostgreSQL
database, the same SQL as hearth's src/infra/store_sql.c builds for PostgreSQL (SELECT <list
columns> FROM properties p WHERE ... ORDER BY <key>, p.id LIMIT n+1; money in integer cents) and
the same JSON list shape as src/api/properties.c + property_write_json (money as dollars, whole
numbers without a fraction, times as RFC 3339 UTC with microseconds, next_cursor the same
base64url keyset cursor). No result caching.

Run (from this directory): DATABASE_URL=postgres://... /usr/bin/python3 -m uvicorn app:app \
    --workers $(nproc) --no-access-log --port P
Knobs: PEER_POOL (connections per worker process, default 4, i.e. hearth's default pool of 4
per process).

Idiomatic choices, each the cheaper of the common ones: a sync `def` endpoint (FastAPI runs it on
its thread pool, so blocking psycopg2 calls do not stall the event loop); a
ThreadedConnectionPool per worker process, with a semaphore so that threads wait for a
connection instead of failing when all are in use; the result returned as a JSONResponse (skips
jsonable_encoder; starlette serialises with json.dumps).
"""
import base64
import datetime
import json
import os
import threading
from decimal import Decimal, InvalidOperation
from typing import Optional

import psycopg2
import psycopg2.pool
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse

DATABASE_URL = os.environ["DATABASE_URL"]
POOL_SIZE = int(os.environ.get("PEER_POOL", "4"))

# store_sql.h STORE_LIST_COLUMNS: the list form reads NULL in place of the source features
LIST_COLUMNS = (
    "p.id, p.title, p.description, p.price_cents, p.location, p.city, p.state, p.zip, p.latitude, "
    "p.longitude, p.bedrooms, p.bathrooms, p.size_sqft, p.lot_size_sqft, p.year_built, p.amenities, "
    "p.image_urls, p.school_rating, p.commute_time, p.property_type, p.status, NULL, p.source, "
    "p.external_id, p.owner_id, p.version, p.created_at, p.updated_at"
)
SORTS = ("created_at", "price", "size_sqft", "bedrooms", "year_built")
STATUSES = ("active", "pending", "sold", "off_market")
TYPES = ("single_family", "condo", "townhouse", "multi_family", "land", "other")

app = FastAPI()
_pool = None
_sem = threading.BoundedSemaphore(POOL_SIZE)
_pool_lock = threading.Lock()


def pool():
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = psycopg2.pool.ThreadedConnectionPool(POOL_SIZE, POOL_SIZE, DATABASE_URL)
    return _pool


def sort_expr(key, desc):
    if key == "price":
        return "p.price_cents"
    if key == "size_sqft":
        return "p.size_sqft"
    if key == "bedrooms":
        return "p.bedrooms"
    if key == "year_built":
        return "coalesce(p.year_built, -1)" if desc else "coalesce(p.year_built, 99999)"
    return "p.created_at"


def sort_value(row, key, desc):
    if key == "price":
        return row[3]
    if key == "size_sqft":
        return row[12]
    if key == "bedrooms":
        return row[10]
    if key == "year_built":
        return row[14] if row[14] is not None else (-1 if desc else 99999)
    return row[26]


def money_cents(name, v):
    """hearth's money_parse: dollars with at most two (non-zero) decimals, non-negative."""
    try:
        d = Decimal(v)
    except InvalidOperation:
        raise HTTPException(400, f"{name} must be a number of dollars")
    cents = d * 100
    if d < 0 or cents != cents.to_integral_value():
        raise HTTPException(422, f"{name} must be a non-negative amount with at most two decimals")
    return int(cents)


def num(v):
    """jw_double: whole numbers without a fraction, others as the shortest round-trip form."""
    if v is None:
        return None
    if v == int(v) and abs(v) < 1e15:
        return int(v)
    return v


def money(cents):
    return cents // 100 if cents % 100 == 0 else cents / 100


_EPOCH = datetime.datetime(1970, 1, 1)


def rfc3339(us):
    return (_EPOCH + datetime.timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def item(r):
    # property_write_json(with_features=false): the same keys in the same order
    return {
        "id": r[0],
        "title": r[1],
        "description": r[2],
        "price": money(r[3]),
        "location": r[4],
        "city": r[5],
        "state": r[6],
        "zip": r[7],
        "latitude": num(r[8]),
        "longitude": num(r[9]),
        "bedrooms": r[10],
        "bathrooms": num(r[11]),
        "size_sqft": r[12],
        "lot_size_sqft": r[13],
        "year_built": r[14],
        "amenities": json.loads(r[15]) if r[15] else [],
        "image_urls": json.loads(r[16]) if r[16] else [],
        "school_rating": num(r[17]),
        "commute_time": r[18],
        "property_type": r[19],
        "status": r[20],
        "source": r[22],
        "external_id": r[23],
        "owner_id": r[24] or None,
        "version": r[25],
        "created_at": rfc3339(r[26]),
        "updated_at": rfc3339(r[27]),
    }


def b64url(raw):
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@app.get("/health/live")
def live():
    return {"status": "ok"}


@app.get("/api/properties")
def list_properties(
    limit: int = Query(20, ge=1, le=100),
    min_price: Optional[str] = None,
    max_price: Optional[str] = None,
    min_bedrooms: Optional[int] = Query(None, ge=0, le=100),
    min_bathrooms: Optional[float] = Query(None, ge=0, le=100),
    min_size_sqft: Optional[int] = Query(None, ge=0, le=1000000),
    max_size_sqft: Optional[int] = Query(None, ge=0, le=1000000),
    max_commute_time: Optional[int] = Query(None, ge=0, le=1440),
    min_school_rating: Optional[float] = Query(None, ge=0, le=10),
    city: Optional[str] = Query(None, max_length=200),
    property_type: Optional[str] = Query(None, max_length=200),
    status: Optional[str] = Query(None, max_length=200),
    sort: str = "-created_at",
    cursor: Optional[str] = None,
):
    desc = sort.startswith("-")
    key = sort[1:] if desc else sort
    if key not in SORTS:
        raise HTTPException(422, "sort must be one of price, size_sqft, bedrooms, year_built, created_at")
    if status and status not in STATUSES:
        raise HTTPException(422, "status must be one of active, pending, sold, off_market")
    types = [t.strip() for t in property_type.split(",") if t.strip()] if property_type else []
    if any(t not in TYPES for t in types):
        raise HTTPException(422, "property_type must be one of " + ", ".join(TYPES))

    # store_sql_search for SQL_POSTGRES, in the same order of conditions
    sql = ["SELECT " + LIST_COLUMNS + " FROM properties p WHERE true"]
    args = []

    def cond(text, v):
        sql.append(text)
        args.append(v)

    if min_price:
        cond(" AND p.price_cents >= %s", money_cents("min_price", min_price))
    if max_price:
        cond(" AND p.price_cents <= %s", money_cents("max_price", max_price))
    if min_bedrooms is not None:
        cond(" AND p.bedrooms >= %s", min_bedrooms)
    if min_bathrooms is not None:
        cond(" AND p.bathrooms >= %s", min_bathrooms)
    if min_size_sqft is not None:
        cond(" AND p.size_sqft >= %s", min_size_sqft)
    if max_size_sqft is not None:
        cond(" AND p.size_sqft <= %s", max_size_sqft)
    if city:
        cond(" AND lower(p.city) = lower(%s)", city)
    if types:
        sql.append(" AND p.property_type IN (" + ", ".join(["%s"] * len(types)) + ")")
        args.extend(types)
    if max_commute_time is not None:
        cond(" AND p.commute_time <= %s", max_commute_time)
    if min_school_rating is not None:
        cond(" AND p.school_rating >= %s", min_school_rating)
    if status:
        cond(" AND p.status = %s", status)
    expr = sort_expr(key, desc)
    if cursor:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
            v1, ckey, cdir, cval, cid = raw.split("|")
            assert v1 == "v1" and ckey == key and cdir == ("d" if desc else "a")
            cval, cid = int(cval), int(cid)
        except Exception:
            raise HTTPException(400, "cursor is not a cursor returned by this search (same sort)")
        sql.append(f" AND ({expr}, p.id) {'<' if desc else '>'} (%s, %s)")
        args.extend((cval, cid))
    d = "DESC" if desc else "ASC"
    sql.append(f" ORDER BY {expr} {d}, p.id {d} LIMIT %s")
    args.append(limit + 1)

    with _sem:
        p = pool()
        conn = p.getconn()
        try:
            if not conn.autocommit:
                conn.autocommit = True  # one round trip per query: no BEGIN / ROLLBACK around it
            with conn.cursor() as cur:
                cur.execute("".join(sql), args)
                rows = cur.fetchall()
        except psycopg2.Error:
            p.putconn(conn, close=True)
            raise HTTPException(503, "database unavailable")
        else:
            p.putconn(conn)

    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if has_more and rows:
        last = rows[-1]
        next_cursor = b64url(f"v1|{key}|{'d' if desc else 'a'}|{sort_value(last, key, desc)}|{last[0]}")
    return JSONResponse({"items": [item(r) for r in rows], "next_cursor": next_cursor})
