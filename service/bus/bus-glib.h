/* SPDX-License-Identifier: Apache-2.0 */
/* Attaches an sd-bus connection to the GLib main loop with one small GSource. */
#pragma once

#include <glib.h>
#include <systemd/sd-bus.h>

/* Returns the source id; the source holds a reference to @bus until it is destroyed.
 * @on_lost is called once if the connection to the bus is lost. */
guint kiln_bus_attach_glib(sd_bus *bus, GMainContext *context, GSourceFunc on_lost, gpointer user_data);
