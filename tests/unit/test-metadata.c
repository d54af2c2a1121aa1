/* SPDX-License-Identifier: Apache-2.0 */
#include <glib/gstdio.h>

#include "objects/builder.h"

#define ID "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define LAYER "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

static KilnBuilder *sample(void)
{
        KilnBuilder *b = kiln_builder_new(ID, "web", 1000, "/srv/rootfs", LAYER, 1700000000123456);
        const char *env[] = {"PATH=/usr/bin:/bin", "LANG=C.UTF-8", NULL};
        const char *labels[] = {"a=1", "b=x=y", NULL};
        const char *caps[] = {"CAP_NET_ADMIN", NULL};

        b->config.env = g_strdupv((char **)env);
        b->config.labels = g_strdupv((char **)labels);
        b->config.cap_add = g_strdupv((char **)caps);
        b->config.working_dir = g_strdup("/srv");
        b->config.hostname = g_strdup("builder");
        b->config.isolation = g_strdup("oci");
        return b;
}

static void test_round_trip(void)
{
        g_autoptr(KilnBuilder) b = sample();
        g_autofree char *json = kiln_builder_to_json(b);
        g_autoptr(GError) error = NULL;
        g_autoptr(KilnBuilder) c = kiln_builder_from_json(json, &error);
        g_autofree char *again = NULL;

        g_assert_no_error(error);
        g_assert_cmpstr(c->id, ==, ID);
        g_assert_cmpstr(c->name, ==, "web");
        g_assert_cmpuint(c->owner, ==, 1000);
        g_assert_cmpstr(c->from, ==, "/srv/rootfs");
        g_assert_cmpuint(c->created_usec, ==, 1700000000123456);
        g_assert_cmpstrv(c->config.env, b->config.env);
        g_assert_cmpstrv(c->config.labels, b->config.labels);
        g_assert_cmpstr(c->config.working_dir, ==, "/srv");
        g_assert_cmpstrv(c->config.cap_add, b->config.cap_add);
        /* Byte-for-byte stable: saving what was loaded writes the same file. */
        again = kiln_builder_to_json(c);
        g_assert_cmpstr(json, ==, again);
}

static void test_save_load(void)
{
        g_autofree char *dir = g_dir_make_tmp("kiln-test-XXXXXX", NULL);
        g_autofree char *file = g_build_filename(dir, "builder.json", NULL);
        g_autoptr(KilnBuilder) b = sample();
        g_autoptr(KilnBuilder) c = NULL;
        g_autoptr(GError) error = NULL;
        GStatBuf st;

        g_assert_true(kiln_builder_save(b, dir, &error));
        g_assert_no_error(error);
        g_assert_cmpint(g_stat(file, &st), ==, 0);
        g_assert_cmpint(st.st_mode & 0777, ==, 0600);
        c = kiln_builder_load(dir, &error);
        g_assert_no_error(error);
        g_assert_cmpstr(c->name, ==, "web");
        g_assert_cmpint(g_unlink(file), ==, 0);
        g_assert_cmpint(g_rmdir(dir), ==, 0);
}

static void test_rejects_damaged(void)
{
        static const char *const bad[] = {
                "",
                "[]",
                "{\"version\":2}",
                "{\"version\":1,\"id\":\"../"
                "x\",\"name\":\"a\",\"owner\":0,\"from\":\"scratch\",\"layer\":\"" LAYER "\",\"created\":1}",
                "{\"version\":1,\"id\":\"" ID
                "\",\"name\":\"a/b\",\"owner\":0,\"from\":\"scratch\",\"layer\":\"" LAYER
                "\",\"created\":1}",
                "{\"version\":1,\"id\":\"" ID
                "\",\"name\":\"a\",\"owner\":-1,\"from\":\"scratch\",\"layer\":\"" LAYER "\",\"created\":1}",
                "{\"version\":1,\"id\":\"" ID
                "\",\"name\":\"a\",\"owner\":0,\"from\":\"scratch\",\"layer\":\"../../etc\","
                "\"created\":1}",
                "{\"version\":1,\"id\":\"" ID
                "\",\"name\":\"a\",\"owner\":0,\"from\":\"scratch\",\"layer\":\"" LAYER
                "\",\"created\":1,\"config\":{\"env\":[\"NOEQUALS\"]}}",
                "{\"version\":1,\"id\":\"" ID
                "\",\"name\":\"a\",\"owner\":0,\"from\":\"scratch\",\"layer\":\"" LAYER
                "\",\"created\":1,\"config\":{\"env\":\"A=b\"}}",
                "{\"version\":1,\"id\":\"" ID
                "\",\"name\":\"a\",\"owner\":0,\"from\":\"scratch\",\"layer\":\"" LAYER
                "\",\"created\":1,\"config\":{\"cap_add\":[\"CAP_FLY\"]}}",
                /* Images: layers must be digests and end with layer (the top one). */
                "{\"version\":1,\"id\":\"" ID
                "\",\"name\":\"a\",\"owner\":0,\"from\":\"scratch\",\"layer\":\"" LAYER
                "\",\"layers\":[\"../x\",\"" LAYER "\"],\"created\":1}",
                "{\"version\":1,\"id\":\"" ID
                "\",\"name\":\"a\",\"owner\":0,\"from\":\"scratch\",\"layer\":\"" LAYER
                "\",\"layers\":[\"" LAYER "\",\"" ID "\"],\"created\":1}",
                "{\"version\":1,\"id\":\"" ID
                "\",\"name\":\"a\",\"owner\":0,\"from\":\"scratch\",\"layer\":\"" LAYER
                "\",\"layers\":[],\"created\":1}",
                "{\"version\":1,\"id\":\"" ID
                "\",\"name\":\"a\",\"owner\":0,\"from\":\"scratch\",\"layer\":\"" LAYER
                "\",\"created\":1,\"config\":{\"exposed_ports\":[\"99999/tcp\"]}}",
                NULL,
        };

        for (const char *const *j = bad; *j; j++) {
                g_autoptr(GError) error = NULL;
                g_autoptr(KilnBuilder) b = kiln_builder_from_json(*j, &error);
                g_assert_null(b);
                g_assert_nonnull(error);
        }
}

/* An image's builder names its layers, bottom first; one written before images (one "layer") reads as
 * a builder of that one layer. */
static void test_layers(void)
{
        const char *layers[] = {ID, LAYER, NULL};
        g_autoptr(KilnBuilder) b = sample();
        g_autoptr(KilnBuilder) c = NULL, old = NULL;
        g_autoptr(GError) error = NULL;
        g_autofree char *json = NULL;

        kiln_builder_set_layers(b, layers);
        b->image = g_strdup("{\"digest\":\"sha256:" ID "\"}");
        b->config.stop_signal = g_strdup("SIGINT");
        json = kiln_builder_to_json(b);
        c = kiln_builder_from_json(json, &error);
        g_assert_no_error(error);
        g_assert_cmpstrv(c->layers, layers);
        g_assert_cmpstr(c->layer, ==, LAYER);
        g_assert_cmpstr(c->image, ==, b->image);
        g_assert_cmpstr(c->config.stop_signal, ==, "SIGINT");

        old = kiln_builder_from_json("{\"version\":1,\"id\":\"" ID "\",\"name\":\"a\",\"owner\":0,"
                                     "\"from\":\"scratch\",\"layer\":\"" LAYER "\",\"created\":1}",
                                     &error);
        g_assert_no_error(error);
        g_assert_cmpstrv(old->layers, ((const char *const[]){LAYER, NULL}));
        g_assert_null(old->image);
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/metadata/round-trip", test_round_trip);
        g_test_add_func("/metadata/save-load", test_save_load);
        g_test_add_func("/metadata/rejects-damaged", test_rejects_damaged);
        g_test_add_func("/metadata/layers", test_layers);
        return g_test_run();
}
