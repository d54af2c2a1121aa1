/* SPDX-License-Identifier: Apache-2.0 */
/* Driving a KilnContainer from a test on the default main context: the start and wait callbacks and a
 * bounded wait for them. */
#pragma once

#include <gio/gio.h>

typedef struct {
        gboolean done;
        gboolean ok; /* start */
        int status;  /* wait */
        GError *error;
} DriveResult;

void drive_result_clear(DriveResult *r);
/* GAsyncReadyCallbacks for kiln_container_start_async / _wait_async, @data a DriveResult. */
void drive_on_started(GObject *source, GAsyncResult *result, gpointer data);
void drive_on_waited(GObject *source, GAsyncResult *result, gpointer data);
/* Iterates the default main context until *@flag, failing the test after @timeout_seconds. Attach
 * drive_on_tick (a 1 s timeout) so that the deadline is checked while nothing else happens. */
void drive_iterate_until(const gboolean *flag, int timeout_seconds);
gboolean drive_on_tick(gpointer data);
