/* SPDX-License-Identifier: Apache-2.0 */
#include <time.h>

#include "bus/bus-glib.h"

typedef struct {
        GSource source;
        sd_bus *bus;
        gpointer fd_tag;
        GIOCondition events;
} BusSource;

static gboolean bus_source_prepare(GSource *source, gint *timeout_ms)
{
        BusSource *s = (BusSource *)source;
        uint64_t until;
        int events;

        /* Only on change: g_source_modify_unix_fd() wakes the context up, and doing that from every
         * prepare keeps the loop spinning. */
        events = sd_bus_get_events(s->bus);
        if (events >= 0 && (GIOCondition)events != s->events) {
                s->events = (GIOCondition)events;
                g_source_modify_unix_fd(source, s->fd_tag, s->events);
        }

        *timeout_ms = -1;
        if (sd_bus_get_timeout(s->bus, &until) < 0 || until == UINT64_MAX)
                return FALSE;
        if (until == 0)
                return TRUE; /* messages are already queued */

        /* sd-bus timeouts are absolute CLOCK_MONOTONIC, as is g_get_monotonic_time(). */
        gint64 now = g_get_monotonic_time();
        if ((gint64)until <= now)
                return TRUE;
        *timeout_ms = (gint)MIN((until - (uint64_t)now + 999) / 1000, (uint64_t)G_MAXINT);
        return FALSE;
}

static gboolean bus_source_check(GSource *source)
{
        BusSource *s = (BusSource *)source;
        uint64_t until;

        if (g_source_query_unix_fd(source, s->fd_tag) != 0)
                return TRUE;
        return sd_bus_get_timeout(s->bus, &until) >= 0 && until != UINT64_MAX &&
               (gint64)until <= g_get_monotonic_time();
}

static gboolean bus_source_dispatch(GSource *source, GSourceFunc callback, gpointer user_data)
{
        BusSource *s = (BusSource *)source;
        int r;

        do
                r = sd_bus_process(s->bus, NULL);
        while (r > 0);
        if (r < 0 && r != -ECONNRESET && r != -ENOTCONN)
                g_warning("Processing the bus connection failed: %s", g_strerror(-r));
        /* However it failed, a connection that is no longer open will not come back: the daemon dropped
         * us (a message past its limits, its own restart). Nothing can be served any more; the callback
         * decides how kilnd ends (with a failure: main.c). */
        if (r < 0 && (r == -ECONNRESET || r == -ENOTCONN || sd_bus_is_open(s->bus) <= 0)) {
                g_warning("Lost the bus connection: %s", g_strerror(-r));
                return callback ? callback(user_data) : G_SOURCE_REMOVE;
        }
        return G_SOURCE_CONTINUE;
}

static void bus_source_finalize(GSource *source)
{
        BusSource *s = (BusSource *)source;

        sd_bus_unref(s->bus);
}

static GSourceFuncs bus_source_funcs = {
        .prepare = bus_source_prepare,
        .check = bus_source_check,
        .dispatch = bus_source_dispatch,
        .finalize = bus_source_finalize,
};

guint kiln_bus_attach_glib(sd_bus *bus, GMainContext *context, GSourceFunc on_lost, gpointer user_data)
{
        BusSource *s = (BusSource *)g_source_new(&bus_source_funcs, sizeof(BusSource));
        guint id;

        s->bus = sd_bus_ref(bus);
        s->events = G_IO_IN;
        s->fd_tag = g_source_add_unix_fd(&s->source, sd_bus_get_fd(bus), s->events);
        g_source_set_name(&s->source, "sd-bus");
        if (on_lost)
                g_source_set_callback(&s->source, on_lost, user_data, NULL);
        id = g_source_attach(&s->source, context);
        g_source_unref(&s->source);
        return id;
}
