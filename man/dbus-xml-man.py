#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes org.kiln.Builder1(5) in scdoc from the introspection XML in dbus/, so the API
reference is the XML's own doc comments and cannot drift from the interface kilnd exports.

usage: dbus-xml-man.py OUTPUT_SCD INTERFACE_XML...

The XML documents itself with comments: the comment before <node> describes the interface
(and the object path), the comment right before a <method>, <signal> or <property> describes
that member ("Name: text", the name is dropped here). A method or signal without a comment is
an error; a property may have none (its name and type say what it is).
"""
import re
import sys
import xml.dom.minidom as minidom

from scd_util import escape, indented, paragraph, paragraphs

PREAMBLE = """org.kiln.Builder1(5)

# NAME

org.kiln.Builder1 - the D-Bus interface of kilnd

# SYNOPSIS

*busctl introspect org.kiln.Builder1 /org/kiln/Builder1*

_/usr/share/dbus-1/interfaces/org.kiln.Builder1.\\*.xml_

# DESCRIPTION

*kilnd*(8) owns the name *org.kiln.Builder1* on the system bus. The manager object
*/org/kiln/Builder1* creates and finds builders; each builder and each run (a *process*) is an
object of its own. *kiln*(1) uses this interface and nothing else; other tools may call it
directly (*busctl*(1), *gdbus*(1), any D-Bus binding). Signatures are D-Bus type strings; an
*a{sv}* of options takes only the keys listed, and an unknown key answers *InvalidArgument*.

Errors are named *org.kiln.Builder1.Error.*_NAME_ (such as *InvalidArgument*, *NotFound*,
*Exists*, *Busy*, *LimitExceeded*, *RuntimeFailed*), or are the bus's own
(*org.freedesktop.DBus.Error.AccessDenied* when polkit refuses,
*org.freedesktop.DBus.Error.InteractiveAuthorizationRequired* when it would ask for a password
the call did not allow). Every message names the argument at fault.

This page is generated from the interface XML; the XML is the reference.
"""


def comment_text(node):
    """The text of a comment without the leading member name ("Run: ...")."""
    lines = node.data.strip('\n').split('\n')
    # Continuation lines are indented to line up with the first; paragraphs() strips them.
    return paragraphs(lines)


def preceding_comment(element):
    """The comment right before element (only whitespace between), or None."""
    node = element.previousSibling
    while node is not None and node.nodeType == node.TEXT_NODE and not node.data.strip():
        node = node.previousSibling
    if node is not None and node.nodeType == node.COMMENT_NODE:
        return node
    return None


def strip_name(paras, name):
    """Drops "Name: " (or "Name " before a verb) from the first paragraph."""
    if paras and paras[0].startswith(name + ':'):
        first = paras[0][len(name) + 1:].strip()
        paras = ([first[0].upper() + first[1:]] if first else []) + paras[1:]
    return paras


def args_signature(element, direction=None):
    out = []
    for arg in element.getElementsByTagName('arg'):
        d = arg.getAttribute('direction') or 'in'
        if direction and d != direction:
            continue
        out.append((arg.getAttribute('name'), arg.getAttribute('type')))
    return out


def fmt_args(args):
    return ', '.join(f'{escape(t)} _{escape(n)}_' for n, t in args)


def interface_section(path):
    doc = minidom.parse(path)
    out = []
    header = None
    for node in doc.childNodes:
        if node.nodeType == node.COMMENT_NODE:
            header = node
    iface = doc.getElementsByTagName('interface')[0]
    name = iface.getAttribute('name')
    out += [f'# {escape(name)}', '']
    if header is not None:
        paras = strip_name(comment_text(header), name)
        out += [paragraph(p) + '\n' for p in paras]

    kinds = (('method', 'Methods'), ('signal', 'Signals'), ('property', 'Properties'))
    for tag, title in kinds:
        members = [e for e in iface.childNodes if e.nodeType == e.ELEMENT_NODE and e.tagName == tag]
        if not members:
            continue
        out += [f'## {title}', '']
        for member in members:
            mname = member.getAttribute('name')
            comment = preceding_comment(member)
            if tag == 'method':
                ins = args_signature(member, 'in')
                outs = args_signature(member, 'out')
                line = f'*{escape(mname)}*({fmt_args(ins)})'
                if outs:
                    line += f' → ({fmt_args(outs)})'
            elif tag == 'signal':
                line = f'*{escape(mname)}*({fmt_args(args_signature(member))})'
            else:
                access = member.getAttribute('access')
                line = f'*{escape(mname)}* {escape(member.getAttribute("type"))}, {access}'
                for ann in member.getElementsByTagName('annotation'):
                    if (ann.getAttribute('name') == 'org.freedesktop.DBus.Property.EmitsChangedSignal'
                            and ann.getAttribute('value') == 'const'):
                        line += ', constant'
            if comment is None and tag != 'property':
                sys.exit(f'{path}: {tag} {mname} has no doc comment')
            paras = strip_name(comment_text(comment), mname) if comment is not None else []
            out.append(line)
            if paras:
                out.append(indented(paras))
            out.append('')
    return out


def main():
    output, sources = sys.argv[1], sys.argv[2:]
    # Manager first, then the objects it hands out, in the order the XML names them.
    order = {'Manager': 0, 'Builder': 1, 'Process': 2}

    def key(p):
        m = re.search(r'\.([A-Za-z]+)\.xml$', p)
        return (order.get(m.group(1), 99) if m else 99, p)

    out = [PREAMBLE]
    for path in sorted(sources, key=key):
        out += interface_section(path)
    out += ['# SEE ALSO', '',
            '*kilnd*(8), *kiln*(1), *kiln.conf*(5), *busctl*(1), *polkit*(8), '
            'the D-Bus specification (https://dbus.freedesktop.org/doc/dbus-specification.html)', '']
    with open(output, 'w', encoding='utf-8') as f:
        f.write('\n'.join(out))


if __name__ == '__main__':
    main()
