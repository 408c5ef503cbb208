"""Splitting long Markdown answers at paragraph and code-fence boundaries."""

from __future__ import annotations

from core.text import split_markdown


def test_short_text_is_one_chunk() -> None:
    """Text under the limit is returned as it is."""
    assert split_markdown("hello", 100) == ["hello"]


def test_paragraphs_are_kept_whole() -> None:
    """Chunks break between paragraphs, each within the limit, and no text is lost."""
    paras = [f"Paragraph {i} " + "word " * 30 for i in range(10)]
    chunks = split_markdown("\n\n".join(paras), 400)
    assert all(len(c) <= 400 for c in chunks) and len(chunks) > 1
    assert [p.strip() for c in chunks for p in c.split("\n\n")] == [p.strip() for p in paras]


def test_code_block_is_not_cut_open() -> None:
    """A long code block split across chunks is closed and re-opened, so every chunk renders."""
    code = "```python\n" + "\n".join(f"print({i})" for i in range(200)) + "\n```"
    chunks = split_markdown("Intro text.\n\n" + code + "\n\nAfter.", 500)
    assert all(len(c) <= 500 for c in chunks)
    for chunk in chunks:
        assert chunk.count("```") % 2 == 0, chunk
    joined = "\n".join(chunks)
    assert all(f"print({i})" in joined for i in range(200))


def test_a_single_huge_line_is_cut_at_words() -> None:
    """One giant paragraph still fits, cut between words."""
    text = " ".join(["lorem"] * 2000)
    chunks = split_markdown(text, 1000)
    assert all(len(c) <= 1000 for c in chunks)
    assert sum(c.count("lorem") for c in chunks) == 2000
