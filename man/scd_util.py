# SPDX-License-Identifier: Apache-2.0
"""Helpers the man page generators share: scdoc escaping."""
import re


def escape(text):
    """Text as scdoc shows it literally: *, _ and \\ are markup there."""
    return re.sub(r'([\\*_])', r'\\\1', text)


def paragraphs(lines):
    """Joins comment lines into paragraphs (a blank line separates them)."""
    out, current = [], []
    for line in lines:
        if line.strip():
            current.append(line.strip())
        elif current:
            out.append(' '.join(current))
            current = []
    if current:
        out.append(' '.join(current))
    return out


def paragraph(text):
    """One paragraph, escaped, that scdoc cannot take for a list item or roff for a request."""
    text = escape(text)
    if text[:1] in ('-', '+'):
        return '\\' + text
    if text[:1] in ('.', "'"):
        raise ValueError(f'a paragraph may not start with {text[0]!r}: {text}')
    return text


def indented(paragraph_list):
    """Paragraphs as the indented body of an scdoc item."""
    return '\n\t\n'.join('\t' + paragraph(p) for p in paragraph_list)
