/* SPDX-License-Identifier: Apache-2.0 */
/* The one grammar of a size in bytes, for kiln.conf, run options and the CLI alike. Pure: GLib only,
 * so that the CLI links it too. */
#pragma once

#include <glib.h>

/* "N" or "N" with one suffix b, k, m or g (any case; powers of 1024, b for bytes): decimal digits
 * only, no sign, no space. FALSE for anything else: empty, a sign, another suffix, more after it, or a
 * value above G_MAXUINT64. "0" is a size; whether zero is allowed is the caller's to say. */
gboolean kiln_parse_size(const char *value, guint64 *ret);
