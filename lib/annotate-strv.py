#!/usr/bin/env python3
"""Adds the GObject Introspection annotation that gdbus-codegen (GLib 2.74) leaves out for string
array arguments ('as'): without "(array zero-terminated=1)" the scanner types `const gchar *const *`
as one string, and Python cannot pass argv.

    annotate-strv.py IN.c OUT.c

Every "@arg_NAME:" doc line of a parameter declared `const gchar *const *arg_NAME` gets the
annotation. A name declared as a string array in one function and as something else in another is
refused rather than guessed."""
import re
import sys


def main(source, target):
    with open(source, encoding='utf-8') as f:
        text = f.read()
    strv = set(re.findall(r'const gchar \*const \*(arg_\w+)', text))
    other = set(re.findall(r'(?<!const )(?:gchar|gint|guint|gboolean|GVariant) \*?(arg_\w+)', text))
    both = strv & other
    if both:
        sys.exit(f'annotate-strv: {", ".join(sorted(both))} is a string array in one place and not in another')
    for name in strv:
        text = re.sub(rf'(@{name}:) ', r'\1 (array zero-terminated=1): ', text)
    with open(target, 'w', encoding='utf-8') as f:
        f.write(text)


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2])
