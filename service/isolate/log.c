/* SPDX-License-Identifier: Apache-2.0 */
/* Errors and where they go: stderr, or the --log file in runc's format, which kilnd's runtime driver
 * reads back after a failed create (its stderr is then the container's). */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "isolate.h"

G_DEFINE_QUARK(kiln - isolate - error - quark, iso_error)

static int log_fd = -1;
static bool log_json;
static bool log_debug; /* --debug: also what it does, as runc's --debug */

static gboolean fail_va(GError **error, int code, int errsv, const char *fmt, va_list ap)
        G_GNUC_PRINTF(4, 0);
static gboolean fail_va(GError **error, int code, int errsv, const char *fmt, va_list ap)
{
        g_autofree char *what = g_strdup_vprintf(fmt, ap);

        if (errsv > 0)
                g_set_error(error, ISO_ERROR, code, "%s: %s", what, g_strerror(errsv));
        else
                g_set_error_literal(error, ISO_ERROR, code, what);
        return FALSE;
}

gboolean iso_fail(GError **error, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        fail_va(error, ISO_EXIT_SETUP, 0, fmt, ap);
        va_end(ap);
        return FALSE;
}

gboolean iso_fail_errno(GError **error, int errsv, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        fail_va(error, ISO_EXIT_SETUP, errsv, fmt, ap);
        va_end(ap);
        return FALSE;
}

gboolean iso_fail_code(GError **error, int code, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        fail_va(error, code, 0, fmt, ap);
        va_end(ap);
        return FALSE;
}

void iso_log_setup(const char *path, bool json)
{
        log_json = json;
        if (!path)
                return;
        /* The driver makes the file in its own bundle directory; appended to, never followed. */
        log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, 0600);
        if (log_fd < 0)
                fprintf(stderr, "kiln-isolate: open log '%s': %s\n", path, g_strerror(errno));
}

void iso_log_close(void)
{
        kiln_close_fdp(&log_fd);
        log_fd = -1;
}

static void write_all(int fd, const char *text, size_t len)
{
        while (len > 0) {
                ssize_t n = write(fd, text, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return;
                text += n;
                len -= (size_t)n;
        }
}

static void log_line(const char *level, const char *message)
{
        g_autofree char *line = NULL;

        if (log_fd < 0) {
                line = g_strdup_printf("kiln-isolate: %s%s%s\n", g_str_equal(level, "error") ? "" : level,
                                       g_str_equal(level, "error") ? "" : ": ", message);
                write_all(STDERR_FILENO, line, strlen(line));
                return;
        }
        if (log_json) {
                g_autoptr(JsonBuilder) b = json_builder_new();
                g_autoptr(JsonGenerator) gen = json_generator_new();
                g_autoptr(JsonNode) root = NULL;
                g_autoptr(GDateTime) now = g_date_time_new_now_utc();
                g_autofree char *time = g_date_time_format_iso8601(now);
                g_autofree char *text = NULL;

                json_builder_begin_object(b);
                json_builder_set_member_name(b, "level");
                json_builder_add_string_value(b, level);
                json_builder_set_member_name(b, "msg");
                json_builder_add_string_value(b, message);
                json_builder_set_member_name(b, "time");
                json_builder_add_string_value(b, time);
                json_builder_end_object(b);
                root = json_builder_get_root(b);
                json_generator_set_root(gen, root);
                text = json_generator_to_data(gen, NULL);
                line = g_strconcat(text, "\n", NULL);
        } else {
                line = g_strdup_printf("level=%s msg=\"%s\"\n", level, message);
        }
        write_all(log_fd, line, strlen(line));
}

void iso_log_error(const char *message)
{
        log_line("error", message);
}

void iso_log_set_debug(bool debug)
{
        log_debug = debug;
}

void iso_log_debug(const char *fmt, ...)
{
        g_autofree char *message = NULL;
        va_list ap;

        if (!log_debug)
                return;
        va_start(ap, fmt);
        message = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        log_line("debug", message);
}
gboolean iso_write_file(int dirfd, const char *path, const char *contents, GError **error)
{
        _cleanup_close_ int fd = openat(dirfd, path, O_WRONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
        size_t len = strlen(contents);
        ssize_t n;

        if (fd < 0)
                return iso_fail_errno(error, errno, "open '%s'", path);
        /* Kernel files (maps, sysctls) take their value in one write. */
        n = write(fd, contents, len);
        if (n < 0)
                return iso_fail_errno(error, errno, "write '%s'", path);
        if ((size_t)n != len)
                return iso_fail(error, "write '%s': short write", path);
        return TRUE;
}
