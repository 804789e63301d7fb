"""Planning layer: pure functions from (wanted, current) to what to do.

Validation of declared maps, entries and programs, map and entry plans (adds, updates, deletes, recreations), program
reload reasons and map decisions on upgrade, field conversions, the C and Go text generated from map schemas, and the
Prometheus exposition text of the CNFs' counters.
No I/O: check mode, diff mode and the real run share one plan, and every function here is unit-tested without root.

May import: types.
"""
