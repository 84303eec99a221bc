"""Message helpers of ``lossbench._checks``."""

from lossbench._checks import first_few, printable


def test_first_few_lists_short_collections_whole():
    assert first_few(["a", "b"]) == "['a', 'b']"
    assert first_few([]) == "[]"


def test_first_few_cuts_and_counts_the_rest():
    assert first_few(iter("abcdefg")) == "['a', 'b', 'c', 'd', 'e'] and 2 more"
    assert first_few(["x; y", "z", "w", "v"], 3, "; ") == "x; y; z; w; and 1 more"
    assert first_few(["x", "z"], 3, "; ") == "x; z"


def test_printable_escapes_what_a_terminal_would_act_on_and_keeps_line_breaks():
    assert printable("plain ±\nnext\tcol") == "plain ±\nnext\tcol"
    assert printable("\x1b]0;title\x07\x1b[2Jred\r\u202eok") == "\\x1b]0;title\\x07\\x1b[2Jred\\r\\u202eok"
