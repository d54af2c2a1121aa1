/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include "container-drive.h"
#include "runtime/runtime.h"

void drive_result_clear(DriveResult *r)
{
        g_clear_error(&r->error);
        memset(r, 0, sizeof(*r));
}

void drive_on_started(G_GNUC_UNUSED GObject *source, GAsyncResult *result, gpointer data)
{
        DriveResult *r = data;

        r->ok = kiln_container_start_finish(NULL, result, &r->error);
        r->done = TRUE;
}

void drive_on_waited(G_GNUC_UNUSED GObject *source, GAsyncResult *result, gpointer data)
{
        DriveResult *r = data;

        r->status = kiln_container_wait_finish(NULL, result, &r->error);
        r->done = TRUE;
}

void drive_iterate_until(const gboolean *flag, int timeout_seconds)
{
        gint64 deadline = g_get_monotonic_time() + (gint64)timeout_seconds * G_USEC_PER_SEC;

        while (!*flag) {
                g_assert_cmpint(g_get_monotonic_time(), <, deadline);
                g_main_context_iteration(NULL, TRUE);
        }
}

gboolean drive_on_tick(G_GNUC_UNUSED gpointer data)
{
        return G_SOURCE_CONTINUE; /* wakes the loop so deadlines are checked */
}
