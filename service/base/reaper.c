/* SPDX-License-Identifier: Apache-2.0 */
/* The reaper: see reaper.h for what it may and may not reap, docs/decisions.md for why it polls. */
#include <stdio.h>
#include <sys/wait.h>

#include "base/kiln-common.h"
#include "base/reaper.h"

#define REAP_INTERVAL_SECONDS 1

/* pid → number of claims. Locked: a GSubprocess may be finalized (and unclaim) in GLib's worker thread,
 * which drops the last reference when the child exits after kilnd let go of it. */
G_LOCK_DEFINE_STATIC(claims);
static GHashTable *claims;
static guint holds;
static guint timer;
static gboolean started;

void kiln_reaper_claim(pid_t pid)
{
        gpointer key = GINT_TO_POINTER(pid);

        g_assert(pid > 0);
        G_LOCK(claims);
        if (!claims)
                claims = g_hash_table_new(g_direct_hash, g_direct_equal);
        g_hash_table_insert(claims, key,
                            GUINT_TO_POINTER(GPOINTER_TO_UINT(g_hash_table_lookup(claims, key)) + 1));
        G_UNLOCK(claims);
        /* A new child: orphans can appear below it from now on. */
        kiln_reaper_kick();
}

void kiln_reaper_unclaim(pid_t pid)
{
        gpointer key = GINT_TO_POINTER(pid);
        guint n;

        G_LOCK(claims);
        n = claims ? GPOINTER_TO_UINT(g_hash_table_lookup(claims, key)) : 0;
        if (n > 1)
                g_hash_table_insert(claims, key, GUINT_TO_POINTER(n - 1));
        else if (n == 1)
                g_hash_table_remove(claims, key);
        G_UNLOCK(claims);
}

static gboolean is_claimed(pid_t pid)
{
        gboolean claimed;

        G_LOCK(claims);
        claimed = claims && g_hash_table_contains(claims, GINT_TO_POINTER(pid));
        G_UNLOCK(claims);
        return claimed;
}

static void on_subprocess_finalized(gpointer data, G_GNUC_UNUSED GObject *where_the_object_was)
{
        kiln_reaper_unclaim((pid_t)GPOINTER_TO_INT(data));
}

void kiln_reaper_claim_subprocess(GSubprocess *process)
{
        const char *id = g_subprocess_get_identifier(process);
        pid_t pid = id ? (pid_t)g_ascii_strtoll(id, NULL, 10) : 0;

        /* No identifier: GLib reaped it already, nothing to protect. */
        if (pid <= 0)
                return;
        kiln_reaper_claim(pid);
        g_object_weak_ref(G_OBJECT(process), on_subprocess_finalized, GINT_TO_POINTER(pid));
}

void kiln_reaper_hold(void)
{
        holds++;
}

void kiln_reaper_release(void)
{
        g_assert(holds > 0);
        if (--holds == 0)
                kiln_reaper_kick();
}

/* Reaps @pid if it is an unclaimed zombie child of ours; nobody else waits for it, so the pid cannot have
 * been recycled between the look and the reap. */
static void reap_one(pid_t pid)
{
        siginfo_t info = {0};

        if (is_claimed(pid))
                return;
        if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | __WALL) == 0 && info.si_pid == pid) {
                g_debug("Reaped orphan %d (%s %d)", (int)pid, info.si_code == CLD_EXITED ? "exit" : "signal",
                        info.si_status);
        }
}

/* Calls @func for each unclaimed child of ours, with its state letter, from /proc (without
 * CONFIG_PROC_CHILDREN there is no list of a process's children). */
static void foreach_child(void (*func)(pid_t pid, char state, gpointer data), gpointer data)
{
        g_autoptr(GDir) dir = g_dir_open("/proc", 0, NULL);
        pid_t self = getpid();
        const char *name;

        while (dir && (name = g_dir_read_name(dir))) {
                g_autofree char *path = NULL;
                g_autofree char *stat = NULL;
                const char *end;
                char state;
                long ppid;
                guint64 pid;

                if (!g_ascii_string_to_unsigned(name, 10, 1, G_MAXINT32, &pid, NULL) ||
                    is_claimed((pid_t)pid))
                        continue;
                path = g_strdup_printf("/proc/%s/stat", name);
                if (!g_file_get_contents(path, &stat, NULL, NULL))
                        continue;
                /* "PID (COMM) STATE PPID ...": COMM may hold anything, so parse from its last ')'. */
                end = strrchr(stat, ')');
                if (!end || sscanf(end + 1, " %c %ld", &state, &ppid) != 2)
                        continue;
                if (ppid == self)
                        func((pid_t)pid, state, data);
        }
}

typedef struct {
        void (*func)(pid_t pid, gpointer data);
        gpointer data;
} ForeachOrphan;

static void call_orphan(pid_t pid, G_GNUC_UNUSED char state, gpointer data)
{
        ForeachOrphan *f = data;

        f->func(pid, f->data);
}

void kiln_reaper_foreach_orphan(void (*func)(pid_t pid, gpointer data), gpointer data)
{
        ForeachOrphan f = {func, data};

        foreach_child(call_orphan, &f);
}

static void reap_zombie(pid_t pid, char state, G_GNUC_UNUSED gpointer data)
{
        if (state == 'Z')
                reap_one(pid);
}

/* One round: FALSE once kilnd has no children at all (then none can be adopted until it spawns one). */
static gboolean reap_round(void)
{
        /* Bounded: a zombie that will not go (it cannot, but) must not hang the main loop. */
        for (int i = 0; i < 4096; i++) {
                siginfo_t info = {0};

                if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT | __WALL) < 0)
                        return errno != ECHILD;
                if (info.si_pid == 0 || holds > 0)
                        return TRUE;
                /* Claimed: GLib or a pid watch will reap it; others may hide behind it. */
                if (is_claimed(info.si_pid)) {
                        foreach_child(reap_zombie, NULL);
                        return TRUE;
                }
                reap_one(info.si_pid);
        }
        return TRUE;
}

static gboolean on_timer(G_GNUC_UNUSED gpointer data)
{
        if (reap_round())
                return G_SOURCE_CONTINUE;
        timer = 0;
        return G_SOURCE_REMOVE;
}

void kiln_reaper_kick(void)
{
        if (!started || timer)
                return;
        timer = g_timeout_add_seconds(REAP_INTERVAL_SECONDS, on_timer, NULL);
}

void kiln_reaper_start(void)
{
        started = TRUE;
        kiln_reaper_kick();
}
