"""The send buffer against a plain bytes model: whatever the chunking, peek()
returns the bytes at the offset asked, consume() drops exactly the acked ones,
and an empty buffer holds no lists (an idle connection's memory)."""
from hypothesis import given, settings, strategies as st

from frames import Gather
from netstack.tcp.connection import SendBuffer

ops = st.lists(st.one_of(
    st.tuples(st.just("append"), st.binary(min_size=0, max_size=40),
              st.sampled_from(["bytes", "bytearray", "memoryview"])),
    st.tuples(st.just("peek"), st.integers(0, 200), st.integers(0, 200), st.booleans()),
    st.tuples(st.just("consume"), st.integers(0, 120)),
), max_size=60)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_send_buffer_matches_a_bytes_model(script):
    buf = SendBuffer()
    model = b""
    for op in script:
        if op[0] == "append":
            data = {"bytes": op[1], "bytearray": bytearray(op[1]), "memoryview": memoryview(op[1])}[op[2]]
            buf.append(data)
            if op[2] == "bytearray":
                data[:] = b"\xff" * len(data)        # a writer that reuses its buffer: the copy keeps the bytes
            model += op[1]
        elif op[0] == "peek":
            _, offset, n, gather = op
            got = buf.peek(offset, n, gather)
            want = model[offset:offset + n] if offset < len(model) else b""
            assert bytes(got) == want
            if gather and got.__class__ is Gather:
                assert len(got.parts) >= 2
        else:
            n = op[1]
            buf.consume(n)
            model = model[n:]
        assert len(buf) == len(model)
        if not model:
            assert buf.chunks == () and buf.starts == ()


def test_peek_of_a_whole_chunk_is_the_chunk_itself():
    buf = SendBuffer()
    a, b = b"x" * 100, b"y" * 50
    buf.append(a)
    buf.append(b)
    assert buf.peek(0, 100) is a                 # no copy, no view
    assert buf.peek(100, 50) is b
    buf.consume(30)
    assert bytes(buf.peek(0, 70)) == a[30:]
    assert bytes(buf.peek(60, 30)) == b"x" * 10 + b"y" * 20
    buf.consume(70)                              # the first chunk is gone whole
    assert buf.chunks == [b] and buf.peek(0, 50) is b
