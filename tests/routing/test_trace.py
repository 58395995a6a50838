"""The trace header's text, built in one f-string, is its parts joined by '; ' for every shape."""

from hypothesis import example, given
from hypothesis import strategies as st

from dialwhom.routing.redact import header_value
from dialwhom.routing.trace import PATHS, Step, Trace

#: what the header separates and masks (";", digits, "+") is common, not left to chance
words = st.text(st.sampled_from("ab;,= |+9") | st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=12)
names = words.filter(bool)
steps = st.builds(Step, words, st.sampled_from(["caller", "custom_field", "digits"]), words,
                  st.floats(0, 20_000, allow_nan=False), words)
times = st.floats(0, 20_000, allow_nan=False)


def trace_of(key, connector, config, steps, skips, queued_ms):
    return st.builds(Trace, call_sid=words, path=st.sampled_from(sorted(PATHS)), key=key, connector=connector,
                     steps=steps, skips=skips, plan=words, elapsed_ms=times, queued_ms=queued_ms, config=config)


#: a cached answer's shape: one lookup, nothing skipped, no wait for a thread
cached_shape = trace_of(names, names, names, st.lists(steps, min_size=1, max_size=1), st.just(()),
                        st.floats(0, 0.999, allow_nan=False))
#: any shape
any_shape = trace_of(st.none() | words, st.none() | words, words, st.lists(steps, max_size=3),
                     st.lists(words, max_size=2).map(tuple), st.sampled_from([0.0, 0.4, 0.999, 1.0, 37.5]))


def parts(t: Trace) -> str:
    """The header's documented layout, part by part (the reference the f-string must match)."""
    out = ["path=" + t.path]
    if t.key:
        out.append("key=" + t.key)
    if t.connector:
        out.append("via=" + t.connector)
    out += [s.short().replace(";", ",") for s in t.steps]
    if t.skips:
        out.append("skipped=" + " | ".join(t.skips).replace(";", ","))
    out += ["plan=" + t.plan, f"{t.elapsed_ms:.0f}ms"]
    if t.queued_ms >= 1:
        out.append(f"queued={t.queued_ms:.0f}ms")
    if t.config:
        out.append("cfg=" + t.config)
    return "; ".join(out)


def _with_separator() -> Trace:
    """A step whose detail holds the header's separator: it must come out as ','."""
    t = Trace("c1", "cache", "caller", "crm", plan="owner", config="abc123")
    t.add("crm", "caller", "found", 3.0, "HTTP 200; 1 record")
    return t


@given(cached_shape)
@example(_with_separator())
def test_a_cached_answer_gives_the_parts_made_safe(trace):
    assert trace.header() == header_value(parts(trace))


@given(any_shape)
def test_every_shape_gives_the_parts_made_safe(trace):
    assert trace.header() == header_value(parts(trace))


def test_a_cached_answer_reads_as_documented():
    trace = Trace(call_sid="c1", path="cache", key="caller", connector="crm", plan="owner,team:north,fallback",
                  elapsed_ms=0.3, config="abc123")
    trace.add("crm", "caller", "cache-hit", 0.2)
    assert trace.header() == "path=cache; key=caller; via=crm; crm[caller]=cache-hit 0ms; plan=owner,team:north,fallback; 0ms; cfg=abc123"
    trace.queued_ms = 4.0  # another shape
    assert trace.header().endswith("; 0ms; queued=4ms; cfg=abc123")
