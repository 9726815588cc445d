"""What checking page CRCs costs (RELIABILITY.md, corrupt pages): lineitem
rewritten by pyarrow with and without page checksums, then a query over all
16 columns timed with each ember binary given (7 runs, median and best).

    python3 -m pip install pyarrow
    python3 benches/reliability/page_checksums.py data/tpch-sf1 ./target/release/ember [OTHER_EMBER ...]

Every binary must print the same answer on both copies.
"""

import glob
import os
import statistics
import subprocess
import sys
import tempfile
import time

import pyarrow.parquet as pq

QUERY = """select count(*), sum(l_orderkey), sum(l_partkey), sum(l_suppkey), sum(l_linenumber),
  sum(l_quantity), sum(l_extendedprice), sum(l_discount), sum(l_tax), max(l_returnflag),
  max(l_linestatus), max(l_shipdate), max(l_commitdate), max(l_receiptdate),
  max(l_shipinstruct), max(l_shipmode), sum(length(l_comment)) from lineitem"""


def main():
    tpch, binaries = sys.argv[1], sys.argv[2:]
    work = tempfile.mkdtemp()
    files = sorted(glob.glob(os.path.join(tpch, "lineitem", "*.parquet")))
    for label, crc in (("page CRCs", True), ("no CRCs", False)):
        os.makedirs(os.path.join(work, label, "lineitem"))
        for i, f in enumerate(files):
            out = os.path.join(work, label, "lineitem", f"part-{i}.parquet")
            pq.write_table(pq.read_table(f), out, write_page_checksum=crc, compression="zstd")
    answers = set()
    for binary in binaries:
        for label in ("page CRCs", "no CRCs"):
            times = []
            for _ in range(7):
                start = time.perf_counter()
                run = subprocess.run(
                    [binary, "sql", "--data-dir", os.path.join(work, label), "-c", QUERY,
                     "--format", "csv"],
                    capture_output=True, text=True, check=True)
                times.append(time.perf_counter() - start)
                answers.add(run.stdout)
            print(f"{binary:40} {label:10} median {statistics.median(times):.3f} s"
                  f"  best {min(times):.3f} s")
    assert len(answers) == 1, "the binaries or the copies disagree"


if __name__ == "__main__":
    main()
