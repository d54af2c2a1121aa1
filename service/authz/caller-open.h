/* SPDX-License-Identifier: Apache-2.0 */
/* Opening a host path as the caller would: the path is resolved and checked with the caller's
 * file-system identity (uid, gid, groups) on this thread alone, so a caller reaches through kilnd only
 * what it could reach itself. */
#pragma once

#include "storage/storage.h"

/* An O_PATH descriptor of @path (symlinks followed as the caller's own open would, so never a
 * symlink itself; magic links such as /proc/self/fd/N refused with ELOOP) when the caller may read
 * it; else -1 with errno (EACCES/EPERM: the caller may not, ENOENT: there is nothing). */
int kiln_open_as_caller(const KilnCreds *creds, const char *path);

/* The same, without asking that the caller may read what the path leads to, only that it may look the
 * path up: a device node named for a run (run-devices.h), which run-privileged, not the node's mode,
 * decides about. */
int kiln_lookup_as_caller(const KilnCreds *creds, const char *path);

/* Whether the caller may read what @fd (which it opened, maybe as O_PATH) refers to. */
gboolean kiln_caller_can_read(const KilnCreds *creds, int fd);
