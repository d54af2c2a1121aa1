/* SPDX-License-Identifier: Apache-2.0 */
/* `kiln-isolate serve`: kilnd starts one server and has it fork a child per command instead of executing
 * kiln-isolate for every run (serve-protocol.h). The child runs the very code a fresh kiln-isolate
 * would, on the descriptors the request brought; what it saves is the execve and the loading of
 * kiln-isolate's libraries, a good part of a chroot run's few milliseconds.
 *
 * The server is single-threaded and does nothing but fork, reap and report, so that a fork of it is as
 * clean as a fresh start: no lock held, no thread lost. It is not dumpable (main.c), nor are its
 * children until the command's execve. The container's init, once its parent child exits, goes to
 * kilnd (a child subreaper above us), as with a kiln-isolate kilnd executed; so does a child whose
 * server died, and kilnd reaps it through the pidfd it was sent: a command half set up is finished,
 * not killed, when the server goes. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/fd-passing.h"
#include "isolate.h"
#include "runtime-ns/runtime-ns.h"
#include "serve-protocol.h"

#define CONTROL_FD 0 /* kilnd's socket */

typedef struct Request {
        char buf[KILN_SERVE_REQUEST_MAX + 1];
        size_t len;
        int fds[KILN_SERVE_REQUEST_FDS]; /* the reply socket, stdin, stdout, stderr */
        int n_fds;
} Request;

static void request_close(Request *r)
{
        for (int i = 0; i < r->n_fds; i++)
                kiln_close_fdp(&r->fds[i]);
        r->n_fds = 0;
}

static void send_reply(int fd, int32_t kind, int32_t value, int pidfd)
{
        KilnServeReply reply = {.kind = kind, .value = value};

        /* kilnd may have given up on this request: nothing to do about it here. */
        (void)kiln_send_fds(fd, &reply, sizeof(reply), &pidfd, pidfd >= 0 ? 1 : 0);
}

/* One datagram and its descriptors. Returns 0 at kilnd's end of file, -1 on a malformed request
 * (its descriptors closed, a reply sent where possible), 1 with a request. */
static int receive(Request *r)
{
        size_t n_fds = 0;
        int flags = 0;
        ssize_t n;

        do
                n = kiln_recv_fds(CONTROL_FD, r->buf, KILN_SERVE_REQUEST_MAX, r->fds, KILN_SERVE_REQUEST_FDS,
                                  &n_fds, 0, &flags);
        while (n < 0 && errno == EINTR);
        r->n_fds = (int)n_fds;
        if (n <= 0) {
                request_close(r);
                return 0;
        }
        r->len = (size_t)n;
        r->buf[r->len] = '\0';
        if (r->n_fds != KILN_SERVE_REQUEST_FDS || (flags & (MSG_TRUNC | MSG_CTRUNC)) || r->len < 2 ||
            r->buf[r->len - 1] != '\0') {
                fprintf(stderr, "kiln-isolate serve: malformed request (%zd bytes, %d descriptors)\n", n,
                        r->n_fds);
                if (r->n_fds > 0)
                        send_reply(r->fds[0], KILN_SERVE_EXITED, ISO_EXIT_SETUP, -1);
                request_close(r);
                return -1;
        }
        return 1;
}

/* A run in a user namespace: what kiln-runtime-ns would have done before executing kiln-isolate, done
 * here by the same code (runtime-ns.c, which checks the paths as the program does). Safe as the program
 * was: this child has what kilnd would have executed (kilnd's credentials, capabilities, environment and
 * descriptor limit, since the server was started as kilnd starts its helpers; the request's working
 * directory), and the mount namespace it makes is its own and the container's alone: the server's stays
 * kilnd's. Like the program, it leaves the verbs that make no container alone. */
static void enter_runtime_ns(char **ns, int n_ns, const char *const *args)
{
        const char *what, *path;

        if (n_ns == 0 || !kiln_runtime_ns_makes_container(args))
                return;
        if (kiln_runtime_ns_enter(ns[0], (const char *const *)ns + 1, n_ns - 1, &what, &path) < 0) {
                fprintf(stderr, "kiln-isolate: %s %s: %s\n", what, path, g_strerror(errno));
                _exit(ISO_EXIT_SETUP);
        }
}

/* In the child: the request's descriptors become stdio, nothing else of the server stays, the
 * intermediate mount namespace (if the request names one) is entered, and the command line is the
 * server's global options followed by the request's. Never returns. */
static void run_child(Request *r, const sigset_t *mask, char **globals, int n_globals,
                      int (*command)(int argc, char **argv))
{
        g_autoptr(GPtrArray) argv = g_ptr_array_new();
        g_autoptr(GPtrArray) ns = g_ptr_array_new();
        const char *cwd = r->buf;
        size_t at = strlen(cwd) + 1;

        (void)sigprocmask(SIG_SETMASK, mask, NULL);
        for (int i = 0; i < 3; i++)
                if (dup2(r->fds[1 + i], i) < 0)
                        _exit(ISO_EXIT_SETUP);
        (void)close_range(3, ~0U, 0);
        if (chdir(cwd) < 0) {
                fprintf(stderr, "kiln-isolate: chdir '%s': %s\n", cwd, g_strerror(errno));
                _exit(ISO_EXIT_SETUP);
        }
        for (; at < r->len && strcmp(r->buf + at, "--") != 0; at += strlen(r->buf + at) + 1)
                g_ptr_array_add(ns, r->buf + at);
        if (at >= r->len || ns->len > KILN_RUNTIME_NS_MAX_KEEP + 1) {
                fprintf(stderr, "kiln-isolate serve: malformed request (its namespace)\n");
                _exit(ISO_EXIT_SETUP);
        }
        at += 3; /* "--" */
        for (int i = 0; i < n_globals; i++)
                g_ptr_array_add(argv, globals[i]);
        for (; at < r->len; at += strlen(r->buf + at) + 1)
                g_ptr_array_add(argv, r->buf + at);
        g_ptr_array_add(argv, NULL);
        enter_runtime_ns((char **)ns->pdata, (int)ns->len, (const char *const *)argv->pdata + n_globals);
        _exit(command((int)argv->len - 1, (char **)argv->pdata));
}

/* Reaps what exited (with @block: waits for one at least) and reports it. FALSE when there was
 * nothing to wait for. */
static gboolean reap(GHashTable *children, gboolean block)
{
        gboolean any = FALSE;

        for (;; block = FALSE) {
                int status, fd;
                pid_t pid = waitpid(-1, &status, block ? 0 : WNOHANG);
                if (pid < 0 && errno == EINTR)
                        continue;
                if (pid <= 0)
                        return any || (pid == 0);
                any = TRUE;
                fd = GPOINTER_TO_INT(g_hash_table_lookup(children, GINT_TO_POINTER(pid))) - 1;
                if (fd < 0)
                        continue;
                send_reply(fd, KILN_SERVE_EXITED,
                           WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status), -1);
                close(fd);
                g_hash_table_remove(children, GINT_TO_POINTER(pid));
        }
}

static void start(Request *r, GHashTable *children, const sigset_t *mask, char **globals, int n_globals,
                  int (*command)(int argc, char **argv))
{
        pid_t pid;
        int pidfd;

        pid = fork();
        if (pid == 0)
                run_child(r, mask, globals, n_globals, command);
        if (pid < 0) {
                fprintf(stderr, "kiln-isolate serve: fork: %s\n", g_strerror(errno));
                send_reply(r->fds[0], KILN_SERVE_EXITED, ISO_EXIT_SETUP, -1);
                request_close(r);
                return;
        }
        /* The child is ours until reaped below: its pid cannot name anything else yet. */
        pidfd = pidfd_open(pid, 0);
        send_reply(r->fds[0], KILN_SERVE_STARTED, pid, pidfd);
        kiln_close_fdp(&pidfd);
        /* +1: the table's "absent" is 0, a descriptor may be 0 in principle. */
        g_hash_table_insert(children, GINT_TO_POINTER(pid), GINT_TO_POINTER(r->fds[0] + 1));
        r->fds[0] = -1;
        request_close(r);
}

/* What every command would do once for itself, done once here: libseccomp's probes of the kernel,
 * json-glib's types. (Symbols are bound at start-up: kiln-isolate is linked with -z now.) */
static void warm_up(void)
{
        g_autoptr(JsonParser) parser = json_parser_new();

        (void)json_parser_load_from_data(parser, "{\"ociVersion\": [1, true, null, 0.5]}", -1, NULL);
        iso_seccomp_probe();
}

int iso_serve(char **globals, int n_globals, int (*command)(int argc, char **argv))
{
        g_autoptr(GHashTable) children = g_hash_table_new(NULL, NULL);
        _cleanup_close_ int sigfd = -1;
        sigset_t chld, old;
        Request *r = g_new0(Request, 1);

        warm_up();

        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        if (sigprocmask(SIG_BLOCK, &chld, &old) < 0 ||
            (sigfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK)) < 0) {
                fprintf(stderr, "kiln-isolate serve: signalfd: %s\n", g_strerror(errno));
                g_free(r);
                return ISO_EXIT_SETUP;
        }
        for (;;) {
                struct pollfd p[2] = {{.fd = CONTROL_FD, .events = POLLIN}, {.fd = sigfd, .events = POLLIN}};
                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        fprintf(stderr, "kiln-isolate serve: poll: %s\n", g_strerror(errno));
                        break;
                }
                if (p[1].revents) {
                        struct signalfd_siginfo info;
                        while (read(sigfd, &info, sizeof(info)) > 0)
                                ;
                        reap(children, FALSE);
                }
                if (p[0].revents) {
                        int got = receive(r);
                        if (got == 0)
                                break; /* kilnd is gone, or let us go */
                        if (got > 0)
                                start(r, children, &old, globals, n_globals, command);
                }
        }
        /* What runs still reports to nobody, but it is reaped here rather than by whoever inherits it. */
        while (g_hash_table_size(children) > 0 && reap(children, TRUE))
                ;
        g_free(r);
        return 0;
}
