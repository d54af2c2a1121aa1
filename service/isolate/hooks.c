/* SPDX-License-Identifier: Apache-2.0 */
/* OCI hooks, as runc runs them: each hook a child of ours with the state JSON on its stdin, its stdout
 * and stderr collected (the first HOOK_OUTPUT_MAX bytes, for the error), killed when its timeout
 * passes. Safe to run as root: kilnd writes only its administrator's hooks.d entries into "hooks"
 * (run/run-hooks.c), never a caller's. Where they run is the caller's choice of stage: prestart,
 * createRuntime, poststart and poststop in kiln-isolate's parent (the runtime's namespaces),
 * createContainer in the init before pivot_root, startContainer in the init just before the command's
 * execve (with the container's credentials, as runc), both in the container's namespaces. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "isolate.h"

#define HOOK_OUTPUT_MAX 1024

static const char *const stage_names[ISO_HOOK_COUNT] = {
        [ISO_HOOK_PRESTART] = "prestart",
        [ISO_HOOK_CREATE_RUNTIME] = "createRuntime",
        [ISO_HOOK_CREATE_CONTAINER] = "createContainer",
        [ISO_HOOK_START_CONTAINER] = "startContainer",
        [ISO_HOOK_POSTSTART] = "poststart",
        [ISO_HOOK_POSTSTOP] = "poststop",
};

const char *iso_hook_stage_name(int stage)
{
        return stage >= 0 && stage < ISO_HOOK_COUNT ? stage_names[stage] : "?";
}

char *iso_hooks_state(const IsoSpec *spec, const char *id, const char *status, pid_t pid)
{
        g_autoptr(JsonBuilder) b = json_builder_new();
        g_autoptr(JsonGenerator) gen = json_generator_new();
        g_autoptr(JsonNode) root = NULL;

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "ociVersion");
        json_builder_add_string_value(b, "1.0.2");
        json_builder_set_member_name(b, "id");
        json_builder_add_string_value(b, id ? id : "");
        json_builder_set_member_name(b, "status");
        json_builder_add_string_value(b, status);
        if (pid > 0) {
                json_builder_set_member_name(b, "pid");
                json_builder_add_int_value(b, pid);
        }
        json_builder_set_member_name(b, "bundle");
        json_builder_add_string_value(b, spec->bundle);
        if (spec->annotations && spec->annotations[0]) {
                json_builder_set_member_name(b, "annotations");
                json_builder_begin_object(b);
                for (char **kv = spec->annotations; kv[0] && kv[1]; kv += 2) {
                        json_builder_set_member_name(b, kv[0]);
                        json_builder_add_string_value(b, kv[1]);
                }
                json_builder_end_object(b);
        }
        json_builder_end_object(b);
        root = json_builder_get_root(b);
        json_generator_set_root(gen, root);
        return json_generator_to_data(gen, NULL);
}

static gint64 now_ms(void)
{
        return g_get_monotonic_time() / 1000;
}

static G_GNUC_NORETURN void hook_child(const IsoHook *hook, int in_fd, int out_fd)
{
        char *default_args[] = {hook->path, NULL};
        char *empty_env[] = {NULL};
        sigset_t all;

        /* The hook gets a clean slate: stdin the state, stdout and stderr ours to collect, no other
         * descriptor, no blocked signal, no handler. */
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        for (int sig = 1; sig < NSIG; sig++)
                signal(sig, SIG_DFL);
        if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0)
                _exit(127);
        (void)close_range(3, ~0U, 0);
        execve(hook->path, hook->args && hook->args[0] ? hook->args : default_args,
               hook->env ? hook->env : empty_env);
        dprintf(2, "exec '%s': %s", hook->path, strerror(errno));
        _exit(127);
}

/* Runs @hook to its end: TRUE when it exited 0. */
static gboolean run_one(const IsoHook *hook, const char *stage, const char *state, GError **error)
{
        int in[2] = {-1, -1}, out[2] = {-1, -1};
        _cleanup_close_ int pidfd = -1, in_fd = -1, out_fd = -1;
        char output[HOOK_OUTPUT_MAX + 1];
        size_t output_len = 0, state_len = strlen(state), written = 0;
        gint64 deadline = hook->timeout > 0 ? now_ms() + (gint64)hook->timeout * 1000 : -1;
        bool timed_out = false;
        int status = 0;
        pid_t pid;

        /* A socket for stdin: a hook that never reads it and exits gets no SIGPIPE sent to us. */
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) < 0)
                return iso_fail_errno(error, errno, "%s hook '%s': socketpair", stage, hook->path);
        if (pipe2(out, O_CLOEXEC) < 0) {
                int errsv = errno;
                close(in[0]);
                close(in[1]);
                return iso_fail_errno(error, errsv, "%s hook '%s': pipe", stage, hook->path);
        }
        fflush(stdout);
        fflush(stderr);
        pid = fork();
        if (pid == 0)
                hook_child(hook, in[0], out[1]);
        close(in[0]);
        close(out[1]);
        in_fd = in[1];
        out_fd = out[0];
        if (pid < 0)
                return iso_fail_errno(error, errno, "%s hook '%s': fork", stage, hook->path);
        pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        (void)fcntl(in_fd, F_SETFL, O_NONBLOCK);
        (void)fcntl(out_fd, F_SETFL, O_NONBLOCK);

        for (;;) {
                struct pollfd p[3] = {
                        {.fd = pidfd, .events = POLLIN},
                        {.fd = written < state_len ? in_fd : -1, .events = POLLOUT},
                        {.fd = out_fd, .events = POLLIN},
                };
                int timeout = deadline < 0 ? -1 : (int)MAX(deadline - now_ms(), 0);
                int r;

                if (pidfd < 0) /* no pidfd (an old kernel): wait for the end of its output instead */
                        p[0].fd = -1;
                r = poll(p, G_N_ELEMENTS(p), timeout);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        break;
                if (r == 0) {
                        timed_out = true;
                        kill(pid, SIGKILL);
                        break;
                }
                if (p[1].revents & (POLLOUT | POLLERR | POLLHUP)) {
                        ssize_t n = send(in_fd, state + written, state_len - written, MSG_NOSIGNAL);
                        if (n > 0)
                                written += (size_t)n;
                        else if (n < 0 && errno != EAGAIN)
                                written = state_len; /* it closed its stdin: fine */
                        if (written == state_len)
                                kiln_close_fdp(&in_fd), in_fd = -1;
                }
                if (p[2].revents & (POLLIN | POLLHUP | POLLERR)) {
                        char buf[512];
                        ssize_t n = read(out_fd, buf, sizeof(buf));
                        if (n > 0) {
                                size_t take = MIN((size_t)n, HOOK_OUTPUT_MAX - output_len);
                                memcpy(output + output_len, buf, take);
                                output_len += take;
                        } else if (n == 0 || errno != EAGAIN) {
                                kiln_close_fdp(&out_fd);
                                out_fd = -1;
                                if (pidfd < 0)
                                        break;
                        }
                }
                if (p[0].revents & POLLIN)
                        break;
        }
        /* What it wrote just before it ended. */
        while (out_fd >= 0 && output_len < HOOK_OUTPUT_MAX) {
                ssize_t n = read(out_fd, output + output_len, HOOK_OUTPUT_MAX - output_len);
                if (n <= 0)
                        break;
                output_len += (size_t)n;
        }
        output[output_len] = '\0';
        g_strchomp(output);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        if (timed_out)
                return iso_fail(error, "%s hook '%s' timed out after %d s%s%s", stage, hook->path,
                                hook->timeout, *output ? ": " : "", output);
        if (WIFSIGNALED(status))
                return iso_fail(error, "%s hook '%s' was killed by signal %d%s%s", stage, hook->path,
                                WTERMSIG(status), *output ? ": " : "", output);
        if (WEXITSTATUS(status) != 0)
                return iso_fail(error, "%s hook '%s' failed with exit status %d%s%s", stage, hook->path,
                                WEXITSTATUS(status), *output ? ": " : "", output);
        return TRUE;
}

gboolean iso_hooks_run(const IsoSpec *spec, int stage, const char *id, const char *status, pid_t pid,
                       GError **error)
{
        g_autofree char *state = NULL;

        if (spec->n_hooks[stage] == 0)
                return TRUE;
        state = iso_hooks_state(spec, id, status, pid);
        for (gsize i = 0; i < spec->n_hooks[stage]; i++) {
                iso_log_debug("%s hook %s", stage_names[stage], spec->hooks[stage][i].path);
                if (!run_one(&spec->hooks[stage][i], stage_names[stage], state, error))
                        return FALSE;
        }
        return TRUE;
}

void iso_hooks_run_logged(const IsoSpec *spec, int stage, const char *id, const char *status, pid_t pid)
{
        g_autofree char *state = NULL;

        if (spec->n_hooks[stage] == 0)
                return;
        state = iso_hooks_state(spec, id, status, pid);
        for (gsize i = 0; i < spec->n_hooks[stage]; i++) {
                g_autoptr(GError) error = NULL;
                if (!run_one(&spec->hooks[stage][i], stage_names[stage], state, &error))
                        iso_log_error(error->message);
        }
}
