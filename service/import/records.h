/* SPDX-License-Identifier: Apache-2.0 */
/* kiln-import's records beside the layers: STATE/layers/.sizes/<layer> (the bytes of file content a
 * layer holds, for kilnd's per-user bound) and STATE/layers/.fingerprints/<fingerprint> (what a full,
 * verified read of an unchanged source found). Both import modes write them the same way. */
#pragma once

#define KILN_IMPORT_SIZES_DIR ".sizes"
#define KILN_IMPORT_FINGERPRINTS_DIR ".fingerprints"

/* LAYERS/DIR/NAME holding @text, whole or not at all (a .tmp- file renamed over it). Best effort: a
 * record that is not there costs a shortcut (or, for a size, counts the layer as 0 bytes), which
 * every reader tolerates. @layers_fd is STATE/layers, root's and writable by nobody else. */
void kiln_import_write_record(int layers_fd, const char *dir, const char *name, const char *text);

/* The record LAYERS/DIR/NAME, at most @max bytes, or NULL. */
char *kiln_import_read_record(int layers_fd, const char *dir, const char *name, size_t max);

/* A fingerprint of the file open at @fd: its fstat() identity (device, inode, size, mtime, ctime;
 * any change to its content moves its ctime, which no unprivileged caller can set) with @what and
 * @extra, as 64 hex characters; NULL if fstat fails. */
char *kiln_import_fd_fingerprint(int fd, const char *what, const char *extra);

/* What an archive's fingerprint is taken with: the options that choose its image (@ref and
 * @platform as kilnd passed them; NULL: none), so that kiln-import and kilnd key records alike. */
char *kiln_import_archive_extra(const char *kind, const char *ref, const char *platform);

/* An archive's record is "<its first layer's diff_id hex>\n<kiln-import's result>\n" (the layer
 * first, so that kilnd drops the record with it): the result, or NULL if @record is not one. */
const char *kiln_import_archive_record_result(const char *record);
