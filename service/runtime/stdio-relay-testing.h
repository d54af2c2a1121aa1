/* SPDX-License-Identifier: Apache-2.0 */
/* For the tests only, out of stdio-relay.h: kilnd never reads these. */
#pragma once

#include <glib.h>

/* Bytes of relay buffers allocated in this process now, and the most there ever were since the last
 * reset: what tests check to see that a relay streams in constant memory. */
void kiln_relay_get_buffer_stats(gsize *in_use, gsize *peak);
void kiln_relay_reset_buffer_peak(void);
