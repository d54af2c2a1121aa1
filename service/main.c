/* SPDX-License-Identifier: Apache-2.0 */
/* kilnd: start-up, the main loop, and an orderly shutdown. */
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include <glib-unix.h>
#include <systemd/sd-daemon.h>

#include "kiln-build-config.h"

#include "authz/auth.h"
#include "bus/bus-glib.h"
#include "base/fd-limit.h"
#include "runtime/isolate-server.h"
#include "objects/image-dbus.h"
#include "objects/manager.h"
#include "base/reaper.h"
#include "run/run.h"

static void ignore_signal(G_GNUC_UNUSED int sig)
{
}

static gboolean on_quit(gpointer loop)
{
        g_main_loop_quit(loop);
        return G_SOURCE_REMOVE;
}

/* Set when the bus connection went away under kilnd (dbus-daemon dropped or restarted): that is a
 * failure, not a stop. The exit status says so, and Restart=on-failure brings kilnd back. */
static gboolean bus_lost;

static gboolean on_bus_lost(gpointer loop)
{
        bus_lost = TRUE;
        g_main_loop_quit(loop);
        return G_SOURCE_REMOVE;
}

static int run(const char *config_path)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(KilnConfig) config = NULL;
        g_autoptr(KilnStorage) storage = NULL;
        g_autoptr(KilnAuth) auth = NULL;
        g_autoptr(KilnManager) manager = NULL;
        g_autofree char *allotments = NULL;
        g_auto(GStrv) isolate_globals = NULL;
        g_autoptr(GMainLoop) loop = g_main_loop_new(NULL, FALSE);
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        guint bus_source;
        int r;

        config = kiln_config_load(config_path, &error);
        if (!config) {
                g_printerr("kilnd: %s\n", error->message);
                return 1;
        }

        /* Files kilnd creates are its own unless a step says otherwise. */
        umask(0077);
        /* A caller's pipe that loses its reader must cost a write an EPIPE, not kilnd its life. A handler
         * rather than SIG_IGN: handlers are reset at exec, so runtimes and containers start with the
         * default disposition. */
        signal(SIGPIPE, ignore_signal);
        /* Before the bus, the storage and any thread: each run holds descriptors (fd-limit.h). */
        kiln_fd_limit_raise();
        /* Container processes re-parent to kilnd, so it can reap them (and wait through pidfds). */
        if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
                g_warning("Cannot become a child subreaper: %s", g_strerror(errno));
        kiln_reaper_start();

        storage = kiln_storage_new(config->state_dir, config->runtime_dir, config->helper_dir, &error);
        if (!storage) {
                g_printerr("kilnd: %s\n", error->message);
                return 1;
        }

        r = sd_bus_open_system_with_description(&bus, "kilnd");
        if (r < 0) {
                g_printerr("kilnd: cannot connect to the system bus: %s\n", g_strerror(-r));
                return 1;
        }
        auth = kiln_auth_new(bus, config, &error);
        if (!auth) {
                g_printerr("kilnd: %s\n", error->message);
                return 1;
        }
        manager = kiln_manager_new(config, storage, auth, bus);
        allotments = g_build_filename(config->state_dir, "userns-allotments", NULL);
        manager->userns = kiln_userns_new(config, allotments, &error);
        if (!manager->userns) {
                g_printerr("kilnd: %s\n", error->message);
                return 1;
        }
        kiln_manager_delete_stale_containers(manager);
        kiln_manager_detect_runtime(manager);
        kiln_manager_detect_idmapped_layers(manager);
        isolate_globals = kiln_run_isolate_globals(config, storage);
        manager->isolate_server = kiln_isolate_server_new((const char *const *)isolate_globals);
        kiln_storage_cleanup_stale(storage);
        kiln_manager_load(manager);
        r = kiln_manager_register(manager);
        if (r >= 0) /* images out: the image store and its objects */
                r = kiln_images_register(manager);
        if (r < 0) {
                g_printerr("kilnd: cannot register objects: %s\n", g_strerror(-r));
                return 1;
        }
        bus_source = kiln_bus_attach_glib(bus, NULL, on_bus_lost, loop);
        r = sd_bus_request_name(bus, KILN_BUS_NAME, 0);
        if (r < 0) {
                g_printerr("kilnd: cannot own %s: %s\n", KILN_BUS_NAME, g_strerror(-r));
                g_source_remove(bus_source);
                return 1;
        }

        g_unix_signal_add(SIGTERM, on_quit, loop);
        g_unix_signal_add(SIGINT, on_quit, loop);
        sd_notify(0, "READY=1\nSTATUS=Serving");
        g_message("kilnd %s ready", KILN_VERSION);

        g_main_loop_run(loop);

        sd_notify(0, "STOPPING=1");
        g_message(bus_lost ? "kilnd stopping: it lost the bus connection" : "kilnd stopping");
        if (!bus_lost)
                (void)sd_bus_release_name(bus, KILN_BUS_NAME);
        kiln_auth_stop(auth);
        kiln_manager_unmount_all(manager);
        kiln_images_free(g_steal_pointer(&manager->images));
        if (!bus_lost) /* a lost bus's source removed itself */
                g_source_remove(bus_source);
        /* Runs were stopped and everything undone either way; without the bus nothing can be served,
         * and the service manager must learn that this was not an orderly stop. */
        return bus_lost ? 1 : 0;
}

int main(int argc, char **argv)
{
        g_autofree char *config_path = NULL;
        gboolean version = FALSE;
        GOptionEntry entries[] = {
                {"config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path, "Read settings from FILE", "FILE"},
                {"version", 0, 0, G_OPTION_ARG_NONE, &version, "Print the version", NULL},
                {NULL},
        };
        g_autoptr(GOptionContext) context = g_option_context_new("- the kiln build service");
        g_autoptr(GError) error = NULL;

        g_option_context_add_main_entries(context, entries, NULL);
        if (!g_option_context_parse(context, &argc, &argv, &error)) {
                g_printerr("kilnd: %s\n", error->message);
                return 2;
        }
        if (version) {
                g_print("kilnd %s\n", KILN_VERSION);
                return 0;
        }
        return run(config_path);
}
