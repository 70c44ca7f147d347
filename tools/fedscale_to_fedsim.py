#!/usr/bin/env python3
"""Converts FedScale's device traces to fedsim's device-trace CSV (server/device_trace.h).

FedScale ships two pickles:
  client_device_capacity: {id: {"computation": ms per sample, "communication": kbit/s}}
  client_behave_trace:    {id: {"active": [t, ...], "inactive": [t, ...], "finish_time": T, ...}}
FedScale charges 3 x computation ms per training sample (forward and
backward) of its reference model and (upload + download kbit) / communication
seconds. fedsim charges multiply-adds, about 3 x the forward ones per training
sample, so a device's rate is

    macs_per_s = reference_macs * 1000 / computation_ms

where reference_macs are the forward multiply-adds per sample of the model the
speeds were measured with (--reference-macs; FedScale's traces do not say).
Both link rates are communication x 1000 bit/s. A device is online on
[active[i], inactive[i]) of its behaviour trace, looped with period
finish_time; devices without a behaviour trace are always online.

Usage:
  /usr/bin/python3 tools/fedscale_to_fedsim.py --capacity client_device_capacity \
      [--behave client_behave_trace] --reference-macs M [--limit N] --out devices.csv
Devices are written in ascending id order (behaviour traces are matched by id,
or, with --match-by-position, the i-th behaviour trace to the i-th device).
Exit code 2 with a message on bad input.
"""
import argparse
import math
import pickle
import sys


def fail(message):
    print("fedscale_to_fedsim: error: " + message, file=sys.stderr)
    sys.exit(2)


def load(path, what):
    try:
        with open(path, "rb") as f:
            data = pickle.load(f)
    except OSError as e:
        fail(f"{path}: cannot read {what}: {e.strerror}")
    except Exception as e:  # a corrupt or foreign pickle
        fail(f"{path}: not a {what} pickle ({type(e).__name__}: {e})")
    if not isinstance(data, dict):
        fail(f"{path}: expected a dict of {what} by client id, found {type(data).__name__}")
    return data


def positive(value, where):
    try:
        v = float(value)
    except (TypeError, ValueError):
        fail(f"{where}: expected a number > 0, found {value!r}")
    if not (v > 0.0) or math.isinf(v):
        fail(f"{where}: expected a finite number > 0, found {value!r}")
    return v


def number(v):
    # Shortest text that reads back as the same double.
    return repr(float(v))


def online_cell(trace, where):
    for key in ("active", "inactive", "finish_time"):
        if key not in trace:
            fail(f"{where}: expected key '{key}' in the behaviour trace")
    active, inactive = list(trace["active"]), list(trace["inactive"])
    period = positive(trace["finish_time"], where + ": finish_time")
    if len(active) != len(inactive):
        fail(f"{where}: expected as many active as inactive times, found {len(active)} and {len(inactive)}")
    intervals = []
    last_end = 0.0
    for a, b in zip(active, inactive):
        a, b = float(a), min(float(b), period)
        if not (a >= last_end and b > a):
            fail(f"{where}: expected increasing, disjoint active periods within finish_time, found {a}-{b}")
        intervals.append(f"{number(a)}-{number(b)}")
        last_end = b
    return number(period), " ".join(intervals)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--capacity", required=True, help="FedScale's client_device_capacity pickle")
    p.add_argument("--behave", help="FedScale's client_behave_trace pickle (default: always online)")
    p.add_argument("--reference-macs", type=float, required=True,
                   help="forward multiply-adds per sample of the model FedScale's speeds were measured with")
    p.add_argument("--limit", type=int, default=0, help="write at most N devices (0: all)")
    p.add_argument("--match-by-position", action="store_true",
                   help="pair behaviour traces with devices by position, not by id")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    if not (a.reference_macs > 0):
        fail(f"--reference-macs: expected a number > 0, found {a.reference_macs}")
    capacity = load(a.capacity, "client_device_capacity")
    behave = load(a.behave, "client_behave_trace") if a.behave else {}
    ids = sorted(capacity)
    if a.limit > 0:
        ids = ids[: a.limit]
    if not ids:
        fail(f"{a.capacity}: no devices")
    behave_ids = sorted(behave)
    rows = ["device,macs_per_s,uplink_bps,downlink_bps,period_s,online"]
    for i, cid in enumerate(ids):
        where = f"{a.capacity}: client {cid!r}"
        cap = capacity[cid]
        if not isinstance(cap, dict) or "computation" not in cap or "communication" not in cap:
            fail(f"{where}: expected {{'computation': ms, 'communication': kbps}}, found {cap!r}")
        ms = positive(cap["computation"], where + ": computation")
        kbps = positive(cap["communication"], where + ": communication")
        period, online = "86400.0", ""
        if behave:
            key = behave_ids[i % len(behave_ids)] if a.match_by_position else cid
            if key in behave:
                period, online = online_cell(behave[key], f"{a.behave}: client {key!r}")
        rows.append(",".join([str(cid), number(a.reference_macs * 1000.0 / ms), number(kbps * 1000.0),
                              number(kbps * 1000.0), period, online]))
    with open(a.out, "w") as f:
        f.write("# converted from FedScale by tools/fedscale_to_fedsim.py (reference_macs = "
                + number(a.reference_macs) + ")\n")
        f.write("\n".join(rows) + "\n")
    print(f"fedscale_to_fedsim: {len(ids)} devices -> {a.out}")


if __name__ == "__main__":
    main()
