/* SPDX-License-Identifier: Apache-2.0 */
/* libarchive, loaded by kilnd when it first writes or reads a tar (Commit, Push, Copy, CopyOut) rather
 * than at start-up: the shared library brings libxml2, ICU and libstdc++ with it, about 2.4 MiB of an
 * idle kilnd's 10 (docs/performance.md). Include this instead of <archive.h>: every libarchive function
 * kiln calls is a macro for the loaded one, so the code calls them as usual. Only the functions listed
 * here may be called; a new one is added to the list. */
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <glib.h>

#if ARCHIVE_VERSION_NUMBER < 3000000 || ARCHIVE_VERSION_NUMBER >= 4000000
#error "kiln loads libarchive.so.13, the library of libarchive 3"
#endif
#define KILN_LIBARCHIVE_SONAME "libarchive.so.13"

#define KILN_ARCHIVE_FUNCTIONS(X)                                                                           \
        X(archive_entry_copy_pathname)                                                                      \
        X(archive_entry_copy_symlink)                                                                       \
        X(archive_entry_filetype)                                                                           \
        X(archive_entry_free)                                                                               \
        X(archive_entry_hardlink)                                                                           \
        X(archive_entry_mtime)                                                                              \
        X(archive_entry_mtime_nsec)                                                                         \
        X(archive_entry_new)                                                                                \
        X(archive_entry_pathname)                                                                           \
        X(archive_entry_perm)                                                                               \
        X(archive_entry_set_filetype)                                                                       \
        X(archive_entry_set_gid)                                                                            \
        X(archive_entry_set_hardlink)                                                                       \
        X(archive_entry_set_mode)                                                                           \
        X(archive_entry_set_mtime)                                                                          \
        X(archive_entry_set_pathname)                                                                       \
        X(archive_entry_set_perm)                                                                           \
        X(archive_entry_set_rdev)                                                                           \
        X(archive_entry_set_size)                                                                           \
        X(archive_entry_set_symlink)                                                                        \
        X(archive_entry_set_uid)                                                                            \
        X(archive_entry_size)                                                                               \
        X(archive_entry_size_is_set)                                                                        \
        X(archive_entry_symlink)                                                                            \
        X(archive_entry_xattr_add_entry)                                                                    \
        X(archive_error_string)                                                                             \
        X(archive_read_data)                                                                                \
        X(archive_read_data_block)                                                                          \
        X(archive_read_free)                                                                                \
        X(archive_read_new)                                                                                 \
        X(archive_read_next_header)                                                                         \
        X(archive_read_open)                                                                                \
        X(archive_read_open_fd)                                                                             \
        X(archive_read_support_filter_all)                                                                  \
        X(archive_read_support_format_gnutar)                                                               \
        X(archive_read_support_format_raw)                                                                  \
        X(archive_read_support_format_tar)                                                                  \
        X(archive_set_error)                                                                                \
        X(archive_write_add_filter_gzip)                                                                    \
        X(archive_write_add_filter_zstd)                                                                    \
        X(archive_write_close)                                                                              \
        X(archive_write_data)                                                                               \
        X(archive_write_free)                                                                               \
        X(archive_write_header)                                                                             \
        X(archive_write_new)                                                                                \
        X(archive_write_open)                                                                               \
        X(archive_write_open2)                                                                              \
        X(archive_write_set_bytes_in_last_block)                                                            \
        X(archive_write_set_bytes_per_block)                                                                \
        X(archive_write_set_filter_option)                                                                  \
        X(archive_write_set_format_pax_restricted)                                                          \
        X(archive_write_set_format_raw)

typedef struct {
#define KILN_ARCHIVE_MEMBER(name) __typeof__(name) *name;
        KILN_ARCHIVE_FUNCTIONS(KILN_ARCHIVE_MEMBER)
#undef KILN_ARCHIVE_MEMBER
} KilnArchiveApi;

/* Loads libarchive once (thread-safe); FALSE with @error when it cannot be loaded. A method that will
 * use it calls this first, so that a missing library is its caller's error. */
gboolean kiln_archive_load(GError **error);
/* The loaded functions; loads them first if need be and aborts if it cannot (a caller that did not
 * call kiln_archive_load first and lost the library meanwhile). */
const KilnArchiveApi *kiln_archive_api(void);

#ifndef KILN_ARCHIVE_LOADER
#define archive_entry_copy_pathname (kiln_archive_api()->archive_entry_copy_pathname)
#define archive_entry_copy_symlink (kiln_archive_api()->archive_entry_copy_symlink)
#define archive_entry_filetype (kiln_archive_api()->archive_entry_filetype)
#define archive_entry_free (kiln_archive_api()->archive_entry_free)
#define archive_entry_hardlink (kiln_archive_api()->archive_entry_hardlink)
#define archive_entry_mtime (kiln_archive_api()->archive_entry_mtime)
#define archive_entry_mtime_nsec (kiln_archive_api()->archive_entry_mtime_nsec)
#define archive_entry_new (kiln_archive_api()->archive_entry_new)
#define archive_entry_pathname (kiln_archive_api()->archive_entry_pathname)
#define archive_entry_perm (kiln_archive_api()->archive_entry_perm)
#define archive_entry_set_filetype (kiln_archive_api()->archive_entry_set_filetype)
#define archive_entry_set_gid (kiln_archive_api()->archive_entry_set_gid)
#define archive_entry_set_hardlink (kiln_archive_api()->archive_entry_set_hardlink)
#define archive_entry_set_mode (kiln_archive_api()->archive_entry_set_mode)
#define archive_entry_set_mtime (kiln_archive_api()->archive_entry_set_mtime)
#define archive_entry_set_pathname (kiln_archive_api()->archive_entry_set_pathname)
#define archive_entry_set_perm (kiln_archive_api()->archive_entry_set_perm)
#define archive_entry_set_rdev (kiln_archive_api()->archive_entry_set_rdev)
#define archive_entry_set_size (kiln_archive_api()->archive_entry_set_size)
#define archive_entry_set_symlink (kiln_archive_api()->archive_entry_set_symlink)
#define archive_entry_set_uid (kiln_archive_api()->archive_entry_set_uid)
#define archive_entry_size (kiln_archive_api()->archive_entry_size)
#define archive_entry_size_is_set (kiln_archive_api()->archive_entry_size_is_set)
#define archive_entry_symlink (kiln_archive_api()->archive_entry_symlink)
#define archive_entry_xattr_add_entry (kiln_archive_api()->archive_entry_xattr_add_entry)
#define archive_error_string (kiln_archive_api()->archive_error_string)
#define archive_read_data (kiln_archive_api()->archive_read_data)
#define archive_read_data_block (kiln_archive_api()->archive_read_data_block)
#define archive_read_free (kiln_archive_api()->archive_read_free)
#define archive_read_new (kiln_archive_api()->archive_read_new)
#define archive_read_next_header (kiln_archive_api()->archive_read_next_header)
#define archive_read_open (kiln_archive_api()->archive_read_open)
#define archive_read_open_fd (kiln_archive_api()->archive_read_open_fd)
#define archive_read_support_filter_all (kiln_archive_api()->archive_read_support_filter_all)
#define archive_read_support_format_gnutar (kiln_archive_api()->archive_read_support_format_gnutar)
#define archive_read_support_format_raw (kiln_archive_api()->archive_read_support_format_raw)
#define archive_read_support_format_tar (kiln_archive_api()->archive_read_support_format_tar)
#define archive_set_error (kiln_archive_api()->archive_set_error)
#define archive_write_add_filter_gzip (kiln_archive_api()->archive_write_add_filter_gzip)
#define archive_write_add_filter_zstd (kiln_archive_api()->archive_write_add_filter_zstd)
#define archive_write_close (kiln_archive_api()->archive_write_close)
#define archive_write_data (kiln_archive_api()->archive_write_data)
#define archive_write_free (kiln_archive_api()->archive_write_free)
#define archive_write_header (kiln_archive_api()->archive_write_header)
#define archive_write_new (kiln_archive_api()->archive_write_new)
#define archive_write_open (kiln_archive_api()->archive_write_open)
#define archive_write_open2 (kiln_archive_api()->archive_write_open2)
#define archive_write_set_bytes_in_last_block (kiln_archive_api()->archive_write_set_bytes_in_last_block)
#define archive_write_set_bytes_per_block (kiln_archive_api()->archive_write_set_bytes_per_block)
#define archive_write_set_filter_option (kiln_archive_api()->archive_write_set_filter_option)
#define archive_write_set_format_pax_restricted (kiln_archive_api()->archive_write_set_format_pax_restricted)
#define archive_write_set_format_raw (kiln_archive_api()->archive_write_set_format_raw)
#endif
