/* SPDX-License-Identifier: Apache-2.0 */
/* The busybox-static root file system the C tests run containers in (the runtime driver's and
 * kiln-isolate's), as tests/integration/kiln_harness.py make_busybox_rootfs builds for Python. */
#pragma once

#include <glib.h>

/* A static executable has no PT_INTERP: it runs in a root file system without a libc. */
gboolean test_is_static_elf(const char *path);

void test_write_file(const char *dir, const char *name, const char *text, int mode);
void test_copy_file(const char *from, const char *to, int mode);

/* @dir: /bin/busybox and its applets, /etc/passwd and /etc/group (root, builder 1000, nobody),
 * /tmp 1777, /root 0700, /home/builder owned by 1000, the usual empty mount points, and two files a
 * shell cannot execute: etc/not-executable (no exec bit) and etc/garbage (exec bit, no format). */
void test_make_busybox_rootfs(const char *dir);
