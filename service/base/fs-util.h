/* SPDX-License-Identifier: Apache-2.0 */
/* File system helpers shared by kiln-import and storage.c: removing untrusted trees without following
 * symlinks, recognising pseudo file systems, validating names. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <glib.h>

/* Subtrees deeper than this many levels are moved up and removed from the top (see kiln_rm_rf_at). */
#define KILN_RM_MAX_FDS 32

/* Removes @name in @dirfd and, if it is a directory, everything below it. Never follows a symlink,
 * never leaves the file system @name is on (a mount point below it fails with -EXDEV), and needs no
 * recursion: at most KILN_RM_MAX_FDS directories are open at once, deeper subtrees are renamed up to
 * the top directory and removed from there. Returns 0 (also if @name does not exist) or -errno; then
 * *failed_path (if not NULL) is set to the path, relative to @dirfd, that could not be removed. */
int kiln_rm_rf_at(int dirfd, const char *name, char **failed_path);

/* Whether the open file @fd lives on a kernel pseudo file system (proc, sysfs, debugfs, cgroup, ...),
 * whose files root must never read on behalf of someone else: some check credentials at read time.
 * @name_out (if not NULL) gets a static name of the file system. Returns -errno if fstatfs fails. */
int kiln_fd_on_pseudo_fs(int fd, const char **name_out);

/* A single path component: not empty, at most NAME_MAX bytes, no '/', no NUL, not "." or "..". */
bool kiln_name_is_valid(const char *name, size_t len);

/* Closes every descriptor >= 3 except those in @keep (any order, values < 3 or < 0 are ignored).
 * Returns 0 or -errno. */
int kiln_close_all_fds_except(const int *keep, size_t n_keep);

/* Formats @s (@len bytes, may hold anything) for an error message: valid UTF-8 is kept, control
 * characters, backslashes and invalid bytes become \xNN. */
char *kiln_escape_for_message(const char *s, size_t len);

/* openat2(2) with @resolve (RESOLVE_*), O_CLOEXEC added, retried where a rename raced with the
 * lookup. Returns the descriptor or -errno (-ENOSYS without openat2: kiln does not emulate it). */
int kiln_openat2(int dirfd, const char *path, int flags, mode_t mode, guint64 resolve);

/* The bytes of regular file content in the tree @topfd, never following a symlink nor leaving its file
 * system, each directory opened by its path from @topfd (RESOLVE_BENEATH, no symlinks), so a tree
 * that changes while it is read is measured as it is met. *@ret_bytes: what was counted. Returns 0,
 * or -errno when part of the tree could not be measured: -ENAMETOOLONG (deeper than a path reaches),
 * -E2BIG (more than 2^20 directories waiting) — a caller bounding a user counts such a tree as full. */
int kiln_tree_bytes_at(int topfd, guint64 *ret_bytes);
