/* SPDX-License-Identifier: Apache-2.0 */
/* State of created containers, for start / kill / delete / state: --root/ID/ holds state.json (the
 * init's pid and start time, the bundle) and, until `start`, the socket the init waits on.
 *
 * A pid alone could name a recycled process; every use compares the start time first and then acts
 * through a pidfd, whose process cannot change under it. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "isolate.h"

#define START_TIMEOUT_MS 60000

static int open_dir(const char *root, const char *id, GError **error)
{
        g_autofree char *path = g_build_filename(root, id, NULL);
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

        if (fd < 0 && errno == ENOENT)
                iso_fail(error, "container '%s' does not exist", id);
        else if (fd < 0)
                iso_fail_errno(error, errno, "open '%s'", path);
        return fd;
}

static gboolean socket_address(int dirfd, struct sockaddr_un *addr)
{
        /* Through the directory's descriptor: the address stays short whatever the state root is. */
        *addr = (struct sockaddr_un){.sun_family = AF_UNIX};
        g_snprintf(addr->sun_path, sizeof(addr->sun_path), "/proc/self/fd/%d/%s", dirfd, ISO_START_SOCKET);
        return TRUE;
}

gboolean iso_state_create(const char *root, const char *id, int *dirfd, int *start_fd, GError **error)
{
        g_autofree char *path = g_build_filename(root, id, NULL);
        _cleanup_close_ int listen_fd = -1;
        struct sockaddr_un addr;

        if (g_mkdir_with_parents(root, 0700) < 0)
                return iso_fail_errno(error, errno, "mkdir '%s'", root);
        if (mkdir(path, 0700) < 0)
                return errno == EEXIST ? iso_fail(error, "container '%s' exists", id)
                                       : iso_fail_errno(error, errno, "mkdir '%s'", path);
        *dirfd = open_dir(root, id, error);
        if (*dirfd < 0)
                goto fail;
        if (!start_fd)
                return TRUE;
        listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (listen_fd < 0) {
                iso_fail_errno(error, errno, "socket");
                goto fail;
        }
        socket_address(*dirfd, &addr);
        if (bind(listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(listen_fd, 1) < 0) {
                iso_fail_errno(error, errno, "listen on '%s/%s'", path, ISO_START_SOCKET);
                goto fail;
        }
        *start_fd = kiln_steal_fd(&listen_fd);
        return TRUE;
fail:
        /* Ours, just made: nothing of another container is removed. */
        (void)iso_state_remove(root, id, NULL);
        return FALSE;
}

/* The start time (field 22 of /proc/PID/stat) of @pid; *alive is FALSE once it exited (a zombie) or is
 * gone. FALSE when there is no such process. */
static gboolean proc_start_time(pid_t pid, guint64 *start_time, bool *alive)
{
        g_autofree char *path = g_strdup_printf("/proc/%d/stat", (int)pid);
        g_autofree char *text = NULL;
        g_auto(GStrv) fields = NULL;
        const char *after;

        if (!g_file_get_contents(path, &text, NULL, NULL))
                return FALSE;
        /* The command name may hold anything; the fields start after its last ')': the state, then
         * the start time 20 fields later. */
        after = strrchr(text, ')');
        if (!after)
                return FALSE;
        fields = g_strsplit(after + 2, " ", 0);
        if (g_strv_length(fields) < 20)
                return FALSE;
        *alive = !g_str_equal(fields[0], "Z") && !g_str_equal(fields[0], "X");
        return g_ascii_string_to_unsigned(fields[19], 10, 0, G_MAXUINT64, start_time, NULL);
}

/* The start time of @pid while it runs; FALSE once it is gone or a zombie. */
static gboolean proc_running(pid_t pid, guint64 *start_time)
{
        bool alive = false;

        return proc_start_time(pid, start_time, &alive) && alive;
}

bool iso_state_running(const IsoState *state)
{
        guint64 t;
        return proc_running(state->pid, &t) && t == state->start_time;
}

gboolean iso_state_signal(const IsoState *state, int sig, bool *gone, GError **error)
{
        _cleanup_close_ int fd = -1;

        *gone = !iso_state_running(state);
        if (*gone)
                return TRUE;
        fd = pidfd_open(state->pid, 0);
        if (fd < 0 && errno != ENOSYS) {
                *gone = errno == ESRCH;
                return *gone ? TRUE : iso_fail_errno(error, errno, "pidfd_open %d", (int)state->pid);
        }
        /* The pid could have been recycled between the check and the open: check again, now that the
         * descriptor holds one process, and signal through it. Without pidfds (before Linux 5.3, or
         * under valgrind) kill(2) follows the check at once. */
        *gone = !iso_state_running(state);
        if (*gone)
                return TRUE;
        if ((fd >= 0 ? pidfd_send_signal(fd, sig, NULL, 0) : kill(state->pid, sig)) < 0) {
                *gone = errno == ESRCH;
                return *gone ? TRUE
                             : iso_fail_errno(error, errno, "signal %d to process %d", sig, (int)state->pid);
        }
        return TRUE;
}

gboolean iso_state_wait_gone(const IsoState *state, int timeout_ms)
{
        /* The init is its parent's (kilnd's) to reap; here it is enough that it ended (a zombie). */
        for (int waited = 0; iso_state_running(state); waited += 5) {
                if (waited >= timeout_ms)
                        return FALSE;
                g_usleep(5000);
        }
        return TRUE;
}

gboolean iso_state_write(int dirfd, pid_t pid, const char *bundle, GError **error)
{
        g_autoptr(JsonBuilder) b = json_builder_new();
        g_autoptr(JsonGenerator) gen = json_generator_new();
        g_autoptr(JsonNode) root = NULL;
        g_autofree char *text = NULL;
        _cleanup_close_ int fd = -1;
        guint64 start_time = 0;
        size_t len;
        bool alive;

        /* A detached run's command may have exited already: it is our child, a zombie until we are
         * gone and kilnd reaps it, so its pid and start time still name it. */
        if (!proc_start_time(pid, &start_time, &alive))
                return iso_fail(error, "read the start time of process %d", (int)pid);
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "pid");
        json_builder_add_int_value(b, pid);
        json_builder_set_member_name(b, "startTime");
        json_builder_add_int_value(b, (gint64)start_time);
        json_builder_set_member_name(b, "bundle");
        json_builder_add_string_value(b, bundle);
        json_builder_end_object(b);
        root = json_builder_get_root(b);
        json_generator_set_root(gen, root);
        text = json_generator_to_data(gen, &len);

        fd = openat(dirfd, ISO_STATE_FILE ".tmp", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
                    0600);
        if (fd < 0 || write(fd, text, len) != (ssize_t)len ||
            renameat(dirfd, ISO_STATE_FILE ".tmp", dirfd, ISO_STATE_FILE) < 0)
                return iso_fail_errno(error, errno, "write state file %s", ISO_STATE_FILE);
        return TRUE;
}

void iso_state_clear(IsoState *state)
{
        g_free(state->bundle);
        memset(state, 0, sizeof(*state));
}

gboolean iso_state_read(const char *root, const char *id, IsoState *state, GError **error)
{
        _cleanup_close_ int dirfd = open_dir(root, id, error);
        g_autoptr(JsonParser) parser = json_parser_new_immutable();
        g_autofree char *path = g_build_filename(root, id, ISO_STATE_FILE, NULL);
        g_autoptr(GError) local = NULL;
        JsonObject *o;
        JsonNode *n;
        struct stat st;

        if (dirfd < 0)
                return FALSE;
        if (!json_parser_load_from_file(parser, path, &local))
                return iso_fail(error, "container '%s' has no state: %s", id, local->message);
        n = json_parser_get_root(parser);
        o = n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
        if (!o || json_object_get_int_member_with_default(o, "pid", 0) <= 1)
                return iso_fail(error, "container '%s': invalid state in '%s'", id, path);
        state->pid = (pid_t)json_object_get_int_member(o, "pid");
        state->start_time = (guint64)json_object_get_int_member_with_default(o, "startTime", 0);
        state->bundle = g_strdup(json_object_get_string_member_with_default(o, "bundle", ""));
        state->started = fstatat(dirfd, ISO_START_SOCKET, &st, AT_SYMLINK_NOFOLLOW) < 0;
        return TRUE;
}

gboolean iso_state_remove(const char *root, const char *id, GError **error)
{
        g_autofree char *path = g_build_filename(root, id, NULL);
        _cleanup_close_ int dirfd = open_dir(root, id, error);

        if (dirfd < 0)
                return FALSE;
        for (const char *const *n =
                     (const char *const[]){ISO_STATE_FILE, ISO_STATE_FILE ".tmp", ISO_START_SOCKET, NULL};
             *n; n++)
                if (unlinkat(dirfd, *n, 0) < 0 && errno != ENOENT)
                        return iso_fail_errno(error, errno, "unlink '%s/%s'", path, *n);
        if (rmdir(path) < 0)
                return iso_fail_errno(error, errno, "rmdir '%s'", path);
        return TRUE;
}

gboolean iso_state_start(const char *root, const char *id, GError **error)
{
        _cleanup_close_ int dirfd = open_dir(root, id, error), fd = -1;
        struct sockaddr_un addr;
        struct pollfd p;
        char byte = 'S';
        int r;

        if (dirfd < 0)
                return FALSE;
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return iso_fail_errno(error, errno, "socket");
        socket_address(dirfd, &addr);
        if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
                if (errno == ENOENT)
                        return iso_fail(error, "container '%s' was started already", id);
                return iso_fail_errno(error, errno, "container '%s' is not waiting to start: connect", id);
        }
        /* Started from now on: a second start finds no socket. */
        if (unlinkat(dirfd, ISO_START_SOCKET, 0) < 0 && errno != ENOENT)
                return iso_fail_errno(error, errno, "unlink the start socket of container '%s'", id);
        if (send(fd, &byte, 1, MSG_NOSIGNAL) < 0)
                return iso_fail_errno(error, errno, "start container '%s': send", id);
        /* The init's end closes when it execs (or exits): then the command runs. */
        p = (struct pollfd){.fd = fd, .events = POLLIN};
        do
                r = poll(&p, 1, START_TIMEOUT_MS);
        while (r < 0 && errno == EINTR);
        if (r == 0)
                return iso_fail(error, "start container '%s': its init did not exec within %d ms", id,
                                START_TIMEOUT_MS);
        return TRUE;
}

gboolean iso_wait_for_start(int listen_fd, GError **error)
{
        int conn;
        char byte;
        ssize_t n;

        do
                conn = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        while (conn < 0 && errno == EINTR);
        if (conn < 0)
                return iso_fail_errno(error, errno, "wait for start: accept");
        do
                n = recv(conn, &byte, 1, 0);
        while (n < 0 && errno == EINTR);
        if (n != 1)
                return iso_fail(error, "wait for start: the start command went away");
        /* @conn stays open (close-on-exec): `start` returns when it closes at execve. */
        return TRUE;
}
