"""The verifier's exact sums over decimal128 columns equal Python's Decimal at every scale, past 2**64."""

from __future__ import annotations

from decimal import Decimal


def test_exact_sums_over_decimal128_match_python_decimal() -> None:
    import random
    from decimal import localcontext

    import pyarrow as pa

    from cryptolab.storage.parquet.verify import _decimal_sum

    rnd = random.Random(5)
    with localcontext() as ctx:
        ctx.prec = 120
        for scale in (0, 8, 16, 30):
            vals = [Decimal(rnd.randint(-(10**37), 10**37)).scaleb(-scale) for _ in range(3000)]
            arr = pa.array([format(v, "f") for v in vals]).cast(pa.decimal128(38, scale))
            assert _decimal_sum(arr) == sum(vals)
            assert _decimal_sum(arr.slice(7, 100)) == sum(vals[7:107])
        p = [Decimal(rnd.randint(1, 10**18)).scaleb(-8) for _ in range(3000)] + [
            Decimal("1e20")
        ]  # last: > 2^64
        q = [Decimal(rnd.randint(1, 10**18)).scaleb(-8) for _ in range(3001)]
        pa_, qa = (pa.array([format(v, "f") for v in x]).cast(pa.decimal128(38, 8)) for x in (p, q))
        assert _decimal_sum(pa_, qa) == sum(a * b for a, b in zip(p, q))
        assert _decimal_sum(pa_[:3000], qa[:3000]) == sum(a * b for a, b in zip(p[:3000], q[:3000]))
