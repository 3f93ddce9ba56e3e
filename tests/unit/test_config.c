/* test_config.c - defaults, every value kind, file syntax, precedence, flags, keys, CORS, JSON,
 * and that config/cloob-server.conf is exactly what --print-config-file generates. */
#include "config.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"

static char g_err[512];
static char g_tmpdir[] = "/tmp/cloob-test-config-XXXXXX";

/* Writes text to <tmpdir>/name and returns the path (static buffer per call site is fine). */
static const char *write_tmp(const char *name, const char *text) {
    static char paths[8][512];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, 512, "%s/%s", g_tmpdir, name);
    FILE *f = fopen(p, "wb");
    CHECK(f != NULL);
    if (f) {
        fwrite(text, 1, strlen(text), f);
        fclose(f);
    }
    return p;
}

/* Runs config_load with a NULL-terminated argv (program name added) and envp. */
static config_result load(server_config *c, const char *const *args, const char *const *env,
                          char **out_text) {
    char *argv[32];
    int argc = 0;
    argv[argc++] = "cloob-server";
    for (; args && *args && argc < 31; args++) argv[argc++] = (char *)*args;
    argv[argc] = NULL;
    static char *const empty_env[] = {NULL};
    char *text = NULL;
    size_t tlen = 0;
    FILE *out = open_memstream(&text, &tlen);
    config_defaults(c);
    g_err[0] = '\0';
    config_result r = config_load(c, argc, argv, env ? (char *const *)env : empty_env, out, g_err,
                                  sizeof g_err);
    fclose(out);
    if (out_text) *out_text = text;
    else free(text);
    return r;
}

#define CHECK_ERR_HAS(s) CHECK_MSG(strstr(g_err, (s)) != NULL, "error '%s' lacks '%s'", g_err, (s))

static void test_defaults(void) {
    server_config c;
    config_defaults(&c);
    CHECK_STR(c.host, "0.0.0.0");
    CHECK_EQ_INT(c.port, 8080);
    CHECK_EQ_INT(c.http_threads, 2);
    CHECK_STR(c.model_dir, "models/cloob");
    CHECK_STR(c.device, "auto");
    CHECK_EQ_INT(c.dtype, CONFIG_DTYPE_FLOAT32);
    CHECK_EQ_INT(c.threads, 0);
    CHECK_EQ_INT(c.workers, 0);
    CHECK_EQ_INT(c.warmup, 1);
    CHECK_EQ_INT(c.max_batch_image, 32);
    CHECK_EQ_INT(c.max_batch_text, 64);
    CHECK_EQ_INT(c.max_queue_delay_us, 2000);
    CHECK_EQ_INT(c.max_queue_items, 1024);
    CHECK_EQ_INT(c.request_timeout_ms, 30000);
    CHECK_EQ_INT(c.shutdown_grace_ms, 10000);
    CHECK_EQ_INT(c.max_body_bytes, 32u << 20);
    CHECK_EQ_INT(c.max_image_pixels, 50000000);
    CHECK_EQ_INT(c.max_image_side, 32768);
    CHECK_EQ_INT(c.max_images_per_request, 64);
    CHECK_EQ_INT(c.max_texts_per_request, 256);
    CHECK_EQ_INT(c.text_truncation, CONFIG_TRUNCATE);
    CHECK_EQ_INT(c.label_cache_size, 4096);
    CHECK_NEAR(c.default_scale, 100.0, 0);
    CHECK_EQ_INT(c.n_api_keys, 0);
    CHECK(c.api_keys == NULL);
    CHECK_STR(c.cors_origins, "");
    CHECK_EQ_INT(c.log_format, LOG_FORMAT_PLAIN);
    CHECK_EQ_INT(c.log_level, LOG_LEVEL_INFO);
    CHECK_EQ_INT(c.access_log, 1);
    CHECK_EQ_INT(config_validate(&c, g_err, sizeof g_err), 0);
    CHECK(!config_auth_enabled(&c));
    CHECK(config_api_key_ok(&c, "anything", 8));

    /* key metadata: env names are CLOOB_ + upper-case name, every key documented */
    CHECK(config_key_count() >= 30);
    for (size_t i = 0; i < config_key_count(); i++) {
        const config_key_info *k = config_key_at(i);
        char want[96];
        snprintf(want, sizeof want, "CLOOB_%s", k->name);
        for (char *p = want; *p; p++) *p = (char)toupper((unsigned char)*p);
        CHECK_STR(k->env, want);
        CHECK(k->help && strlen(k->help) > 10);
        CHECK(k->default_str != NULL);
    }
    CHECK(config_key_at(config_key_count()) == NULL);
    config_free(&c);
}

static void test_set_kinds(void) {
    server_config c;
    config_defaults(&c);
#define OK(k, v) CHECK_MSG(config_set(&c, k, v, "test", g_err, sizeof g_err) == 0, "%s", g_err)
#define BAD(k, v, msg)                                                   \
    do {                                                                 \
        CHECK(config_set(&c, k, v, "test", g_err, sizeof g_err) == -1);  \
        CHECK_ERR_HAS(msg);                                              \
        CHECK_ERR_HAS("test: ");                                         \
    } while (0)
    OK("port", "0");
    OK("port", "65535");
    CHECK_EQ_INT(c.port, 65535);
    BAD("port", "65536", "port: 65536 is out of range [0, 65535]");
    BAD("port", "-1", "out of range");
    BAD("port", "80a", "port: expected an integer (got '80a')");
    BAD("port", "", "expected an integer");
    BAD("port", " 80", "expected an integer");
    BAD("port", "0x50", "expected an integer");
    BAD("port", "99999999999999999999999", "expected an integer");
    CHECK_EQ_INT(c.port, 65535); /* unchanged by failures */
    OK("max-batch-image", "8"); /* dashes and case accepted in names */
    OK("MAX_BATCH_TEXT", "16");
    CHECK_EQ_INT(c.max_batch_image, 8);
    CHECK_EQ_INT(c.max_batch_text, 16);
    BAD("max_batch_image", "0", "out of range");
    OK("max_queue_delay_us", "10000000");
    CHECK_EQ_INT(c.max_queue_delay_us, 10000000);

    /* bytes */
    OK("max_body_bytes", "1GiB");
    CHECK_EQ_INT(c.max_body_bytes, 1ull << 30);
    OK("max_body_bytes", "512k");
    CHECK_EQ_INT(c.max_body_bytes, 512ull << 10);
    OK("max_body_bytes", "4096");
    CHECK_EQ_INT(c.max_body_bytes, 4096);
    OK("max_body_bytes", "4GiB");
    BAD("max_body_bytes", "5GiB", "out of range");
    BAD("max_body_bytes", "32MB", "expected a byte count");
    BAD("max_body_bytes", "-1", "expected a byte count");
    BAD("max_body_bytes", "1.5M", "expected a byte count");
    BAD("max_body_bytes", "99999999999T", "too large");
    BAD("max_body_bytes", "100", "out of range");

    /* counts */
    OK("max_image_pixels", "5.5e7");
    CHECK_EQ_INT(c.max_image_pixels, 55000000);
    OK("max_image_pixels", "1000");
    BAD("max_image_pixels", "1.5", "expected a non-negative integer");
    BAD("max_image_pixels", "2e9", "out of range");
    BAD("max_image_pixels", "nan", "expected a non-negative integer");
    BAD("max_image_pixels", "inf", "expected");
    OK("max_image_side", "4096");
    CHECK_EQ_INT(c.max_image_side, 4096);
    BAD("max_image_side", "0", "out of range");

    /* bool */
    OK("warmup", "off");
    CHECK_EQ_INT(c.warmup, 0);
    OK("warmup", "YES");
    CHECK_EQ_INT(c.warmup, 1);
    BAD("warmup", "maybe", "expected true/false");

    /* double */
    OK("default_scale", "30.5");
    CHECK_NEAR(c.default_scale, 30.5, 0);
    BAD("default_scale", "0", "out of range");
    BAD("default_scale", "-1", "out of range");
    BAD("default_scale", "1e7", "out of range");
    BAD("default_scale", "nan", "expected a number");
    BAD("default_scale", "10x", "expected a number");

    /* enums */
    OK("dtype", "float16");
    CHECK_EQ_INT(c.dtype, CONFIG_DTYPE_FLOAT16);
    BAD("dtype", "bfloat16", "dtype: expected float32 or float16 (got 'bfloat16')");
    OK("text_truncation", "reject");
    CHECK_EQ_INT(c.text_truncation, CONFIG_REJECT);
    BAD("text_truncation", "cut", "expected truncate or reject");
    OK("log_format", "json");
    CHECK_EQ_INT(c.log_format, LOG_FORMAT_JSON);
    BAD("log_format", "xml", "expected plain or json");
    OK("log_level", "debug");
    CHECK_EQ_INT(c.log_level, LOG_LEVEL_DEBUG);
    BAD("log_level", "loud", "log_level");

    /* strings */
    OK("device", "cuda:1");
    OK("device", "cpu");
    BAD("device", "cuda:", "expected auto, cpu, cuda or cuda:N");
    BAD("device", "cuda:256", "cuda:N");
    BAD("device", "cuda:x", "cuda:N");
    BAD("device", "tpu", "cuda:N");
    CHECK_STR(c.device, "cpu");
    OK("host", "::");
    OK("host", "localhost");
    OK("host", "fe80::1%eth0");
    BAD("host", "", "expected an IP address");
    BAD("host", "a b", "expected an IP address");
    BAD("model_dir", "", "must not be empty");
    BAD("model_dir", "a\nb", "control characters");
    OK("model_dir", "/srv/models/cloob");
    CHECK_STR(c.model_dir, "/srv/models/cloob");
    char longv[CONFIG_PATH_MAX + 10];
    memset(longv, 'x', sizeof longv - 1);
    longv[sizeof longv - 1] = '\0';
    BAD("model_dir", longv, "value too long");
    /* the quoted bad value is capped and sanitized */
    CHECK(strlen(g_err) < 200);

    /* unknown keys, with a suggestion when close */
    BAD("max_batch_imgae", "1", "unknown key 'max_batch_imgae' (did you mean 'max_batch_image'?)");
    BAD("totally_unrelated_key", "1", "unknown key");
    CHECK(strstr(g_err, "did you mean") == NULL);
    BAD("config", "x.conf", "unknown key"); /* the file cannot name another file */
    CHECK(config_set(&c, NULL, "1", "t", g_err, sizeof g_err) == -1);
    config_free(&c);
#undef OK
#undef BAD
}

static void test_cors(void) {
    server_config c;
    config_defaults(&c);
    CHECK(!config_cors_origin_allowed(&c, "https://a.example", 17));
    CHECK(config_set(&c, "cors_origins", "*", "t", g_err, sizeof g_err) == 0);
    CHECK(config_cors_origin_allowed(&c, "https://a.example", 17));
    CHECK(config_set(&c, "cors_origins", " https://a.example ,http://localhost:3000", "t", g_err,
                     sizeof g_err) == 0);
    CHECK_STR(c.cors_origins, "https://a.example,http://localhost:3000");
    CHECK(config_cors_origin_allowed(&c, "https://a.example", 17));
    CHECK(config_cors_origin_allowed(&c, "HTTPS://A.EXAMPLE", 17));
    CHECK(config_cors_origin_allowed(&c, "http://localhost:3000", 21));
    CHECK(!config_cors_origin_allowed(&c, "http://localhost:300", 20));
    CHECK(!config_cors_origin_allowed(&c, "https://a.example.evil", 22));
    CHECK(!config_cors_origin_allowed(&c, "https://a.exampl", 16));
    CHECK(!config_cors_origin_allowed(&c, NULL, 0));
    const char *bad[] = {"https://a.example/", "a.example", "*,https://a.example",
                         "https://a.example,", "https://a.example,,http://b", "https://",
                         "https://a b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_MSG(config_set(&c, "cors_origins", bad[i], "t", g_err, sizeof g_err) == -1, "%s",
                  bad[i]);
    }
    CHECK_STR(c.cors_origins, "https://a.example,http://localhost:3000");
    config_free(&c);
}

static void test_api_keys(void) {
    server_config c;
    config_defaults(&c);
    CHECK(config_set(&c, "api_keys", "alpha, beta ,gamma,", "t", g_err, sizeof g_err) == 0);
    CHECK_EQ_INT(c.n_api_keys, 3);
    CHECK(config_auth_enabled(&c));
    CHECK(config_api_key_ok(&c, "beta", 4));
    CHECK(config_api_key_ok(&c, "gamma", 5));
    CHECK(!config_api_key_ok(&c, "bet", 3));
    CHECK(!config_api_key_ok(&c, "betaa", 5));
    CHECK(!config_api_key_ok(&c, "", 0));
    CHECK(!config_api_key_ok(&c, NULL, 0));
    CHECK(!config_api_key_ok(&c, "alphaalpha", 10)); /* the modulo trick must not match repeats */
    /* a later layer replaces, not appends */
    CHECK(config_set(&c, "api_keys", "delta", "t", g_err, sizeof g_err) == 0);
    CHECK_EQ_INT(c.n_api_keys, 1);
    CHECK(!config_api_key_ok(&c, "alpha", 5));
    /* invalid keys are refused without echoing the secret */
    CHECK(config_set(&c, "api_keys", "good,sec ret", "t", g_err, sizeof g_err) == -1);
    CHECK_ERR_HAS("printable ASCII");
    CHECK(strstr(g_err, "sec ret") == NULL);
    CHECK_EQ_INT(c.n_api_keys, 1); /* unchanged */
    char big[300];
    memset(big, 'k', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK(config_set(&c, "api_keys", big, "t", g_err, sizeof g_err) == -1);
    CHECK_ERR_HAS("longer than 256");
    /* empty clears */
    CHECK(config_set(&c, "api_keys", "", "t", g_err, sizeof g_err) == 0);
    CHECK(!config_auth_enabled(&c));

    /* key file: comments, blanks, CRLF, surrounding spaces */
    const char *kf = write_tmp("keys.txt", "# team keys\n\n  key-one  \r\nkey-two\n# old: key-x\n");
    CHECK(config_load_api_keys_file(&c, kf, g_err, sizeof g_err) == 0);
    CHECK_EQ_INT(c.n_api_keys, 2);
    CHECK(config_api_key_ok(&c, "key-one", 7));
    CHECK(config_api_key_ok(&c, "key-two", 7));
    CHECK(!config_api_key_ok(&c, "key-x", 5));
    const char *empty = write_tmp("empty.txt", "# nothing\n\n");
    CHECK(config_load_api_keys_file(&c, empty, g_err, sizeof g_err) == -1);
    CHECK_ERR_HAS("no keys");
    const char *badf = write_tmp("bad.txt", "ok\nnot ok\n");
    CHECK(config_load_api_keys_file(&c, badf, g_err, sizeof g_err) == -1);
    CHECK_ERR_HAS(":2: ");
    CHECK(config_load_api_keys_file(&c, "/nonexistent/keys", g_err, sizeof g_err) == -1);
    CHECK_ERR_HAS("/nonexistent/keys");
    config_free(&c);
    CHECK_EQ_INT(c.n_api_keys, 0);
    config_free(&c); /* twice is fine */
}

static void test_file_syntax(void) {
    server_config c;
    config_defaults(&c);
    const char *text =
        "\xef\xbb\xbf# a comment\n"
        "\n"
        "   \t\n"
        "port = 9000\r\n"
        "host=127.0.0.1   # trailing comment\n"
        "model_dir = \"/models/with # hash \"  # comment after quotes\n"
        "device = 'cpu'\n"
        "  max-batch-image\t=\t16\n"
        "cors_origins =\n"
        "api_keys = a1,b2\n";
    CHECK_MSG(config_parse_text(&c, text, strlen(text), "x.conf", g_err, sizeof g_err) == 0, "%s",
              g_err);
    CHECK_EQ_INT(c.port, 9000);
    CHECK_STR(c.host, "127.0.0.1");
    CHECK_STR(c.model_dir, "/models/with # hash ");
    CHECK_STR(c.device, "cpu");
    CHECK_EQ_INT(c.max_batch_image, 16);
    CHECK_EQ_INT(c.n_api_keys, 2);
    /* text without a final newline, and an empty text */
    CHECK(config_parse_text(&c, "port=1", 6, "x", g_err, sizeof g_err) == 0);
    CHECK_EQ_INT(c.port, 1);
    CHECK(config_parse_text(&c, "", 0, "x", g_err, sizeof g_err) == 0);
    CHECK(config_parse_text(&c, NULL, 0, "x", g_err, sizeof g_err) == 0);

    struct {
        const char *text, *msg;
    } bad[] = {
        {"port = 1\nport 2\n", "x.conf:2: expected 'key = value'"},
        {"\n\nbogus = 1\n", "x.conf:3: unknown key 'bogus'"},
        {"= 1\n", "x.conf:1: missing key"},
        {"po rt = 1\n", "x.conf:1: invalid key 'po rt'"},
        {"port = \"1\n", "missing closing \""},
        {"port = \"1\" 2\n", "unexpected text after the quoted value"},
        {"port = 1.5\n", "x.conf:1: port: expected an integer (got '1.5')"},
        {"workers = -1\n", "x.conf:1: workers: -1 is out of range [0, 1024]"},
        {"log_format = yaml\n", "x.conf:1: log_format: expected plain or json"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(config_parse_text(&c, bad[i].text, strlen(bad[i].text), "x.conf", g_err,
                                sizeof g_err) == -1);
        CHECK_ERR_HAS(bad[i].msg);
    }
    /* NUL byte and over-long line */
    CHECK(config_parse_text(&c, "port = 1\0\n", 10, "x.conf", g_err, sizeof g_err) == -1);
    CHECK_ERR_HAS("x.conf:1: NUL byte");
    size_t n = 9000;
    char *longline = malloc(n + 1);
    memset(longline, '#', n);
    longline[n] = '\0';
    CHECK(config_parse_text(&c, longline, n, "x.conf", g_err, sizeof g_err) == -1);
    CHECK_ERR_HAS("longer than");
    free(longline);
    config_free(&c);
}

static void test_precedence_and_flags(void) {
    server_config c;
    const char *file = write_tmp("p.conf", "port = 1000\nworkers = 3\nlog_level = warn\n");
    const char *env_file[] = {NULL, NULL, NULL, NULL};
    char env_cfg[600];
    snprintf(env_cfg, sizeof env_cfg, "CLOOB_CONFIG=%s", file);

    /* file only (through CLOOB_CONFIG) */
    env_file[0] = env_cfg;
    CHECK_MSG(load(&c, NULL, env_file, NULL) == CONFIG_OK, "%s", g_err);
    CHECK_EQ_INT(c.port, 1000);
    CHECK_EQ_INT(c.workers, 3);
    CHECK_EQ_INT(c.log_level, LOG_LEVEL_WARN);
    CHECK_STR(c.config_file, file);
    config_free(&c);

    /* env beats file */
    env_file[1] = "CLOOB_PORT=2000";
    env_file[2] = "UNRELATED=1";
    CHECK(load(&c, NULL, env_file, NULL) == CONFIG_OK);
    CHECK_EQ_INT(c.port, 2000);
    CHECK_EQ_INT(c.workers, 3);
    config_free(&c);

    /* flag beats env; both flag spellings; last repeated flag wins */
    const char *a1[] = {"--port", "3000", "--workers=5", "--max-batch-text", "8", "--port=3001",
                        NULL};
    CHECK(load(&c, a1, env_file, NULL) == CONFIG_OK);
    CHECK_EQ_INT(c.port, 3001);
    CHECK_EQ_INT(c.workers, 5);
    CHECK_EQ_INT(c.max_batch_text, 8);
    config_free(&c);

    /* --config beats CLOOB_CONFIG */
    const char *other = write_tmp("o.conf", "workers = 7\n");
    const char *a2[] = {"--config", other, NULL};
    CHECK(load(&c, a2, env_file, NULL) == CONFIG_OK);
    CHECK_EQ_INT(c.workers, 7);
    CHECK_STR(c.config_file, other);
    config_free(&c);

    /* errors name their origin */
    const char *env_bad[] = {"CLOOB_MAX_BATCH_IMAGE=lots", NULL};
    CHECK(load(&c, NULL, env_bad, NULL) == CONFIG_ERROR);
    CHECK_ERR_HAS("env CLOOB_MAX_BATCH_IMAGE: max_batch_image: expected an integer (got 'lots')");
    config_free(&c);
    const char *bad_file = write_tmp("b.conf", "# ok\nport = x\n");
    const char *a3[] = {"--config", bad_file, NULL};
    CHECK(load(&c, a3, NULL, NULL) == CONFIG_ERROR);
    CHECK_ERR_HAS("b.conf:2: port: expected an integer");
    config_free(&c);
    const char *a4[] = {"--port", "70000", NULL};
    CHECK(load(&c, a4, NULL, NULL) == CONFIG_ERROR);
    CHECK_ERR_HAS("flag --port: port: 70000 is out of range");
    config_free(&c);
    const char *a5[] = {"--max-batch-imag", "3", NULL};
    CHECK(load(&c, a5, NULL, NULL) == CONFIG_ERROR);
    CHECK_ERR_HAS("flag --max-batch-imag: unknown flag (did you mean 'max_batch_image'?)");
    config_free(&c);
    const char *a6[] = {"--port", NULL};
    CHECK(load(&c, a6, NULL, NULL) == CONFIG_ERROR);
    CHECK_ERR_HAS("flag --port: needs a value");
    config_free(&c);
    const char *a7[] = {"serve", NULL};
    CHECK(load(&c, a7, NULL, NULL) == CONFIG_ERROR);
    CHECK_ERR_HAS("unexpected argument 'serve'");
    config_free(&c);
    const char *a8[] = {"-p", "1", NULL};
    CHECK(load(&c, a8, NULL, NULL) == CONFIG_ERROR);
    config_free(&c);
    const char *a9[] = {"--config", "/nonexistent/x.conf", NULL};
    CHECK(load(&c, a9, NULL, NULL) == CONFIG_ERROR);
    CHECK_ERR_HAS("config file '/nonexistent/x.conf'");
    config_free(&c);
    const char *env_missing[] = {"CLOOB_CONFIG=/nonexistent/y.conf", NULL};
    CHECK(load(&c, NULL, env_missing, NULL) == CONFIG_ERROR);
    CHECK_ERR_HAS("/nonexistent/y.conf");
    config_free(&c);

    /* booleans: bare, negated, with a value; the value is only consumed if it is a bool */
    const char *b1[] = {"--no-warmup", "--access-log", "--port", "5", NULL};
    CHECK(load(&c, b1, NULL, NULL) == CONFIG_OK);
    CHECK_EQ_INT(c.warmup, 0);
    CHECK_EQ_INT(c.access_log, 1);
    CHECK_EQ_INT(c.port, 5);
    config_free(&c);
    const char *b2[] = {"--warmup", "false", "--access_log=no", NULL};
    CHECK(load(&c, b2, NULL, NULL) == CONFIG_OK);
    CHECK_EQ_INT(c.warmup, 0);
    CHECK_EQ_INT(c.access_log, 0);
    config_free(&c);
    const char *b3[] = {"--no-port", NULL};
    CHECK(load(&c, b3, NULL, NULL) == CONFIG_ERROR);
    config_free(&c);

    /* keys through the environment and a key file, merged */
    const char *kf = write_tmp("k2.txt", "filekey\n");
    char env_kf[600];
    snprintf(env_kf, sizeof env_kf, "CLOOB_API_KEYS_FILE=%s", kf);
    const char *env_keys[] = {"CLOOB_API_KEYS=envkey", env_kf, NULL};
    CHECK_MSG(load(&c, NULL, env_keys, NULL) == CONFIG_OK, "%s", g_err);
    CHECK_EQ_INT(c.n_api_keys, 2);
    CHECK(config_api_key_ok(&c, "envkey", 6));
    CHECK(config_api_key_ok(&c, "filekey", 7));
    config_free(&c);

    /* cross-field validation */
    const char *v1[] = {"--request-timeout-ms", "1", "--max-queue-delay-us", "5000", NULL};
    CHECK(load(&c, v1, NULL, NULL) == CONFIG_ERROR);
    CHECK_ERR_HAS("request_timeout_ms");
    config_free(&c);
    const char *v2[] = {"--max-queue-items", "10", NULL};
    CHECK(load(&c, v2, NULL, NULL) == CONFIG_ERROR);
    CHECK_ERR_HAS("max_queue_items (10) must be at least the largest batch (64)");
    config_free(&c);
    const char *v3[] = {"--request-timeout-ms", "0", "--max-queue-delay-us", "5000", NULL};
    CHECK(load(&c, v3, NULL, NULL) == CONFIG_OK); /* 0 = no deadline */
    config_free(&c);
}

static void test_no_default_file(void) {
    /* In a directory without config/cloob-server.conf, no file is read and that is fine. */
    char cwd[1024];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    CHECK(chdir(g_tmpdir) == 0);
    server_config c;
    CHECK(load(&c, NULL, NULL, NULL) == CONFIG_OK);
    CHECK_STR(c.config_file, "");
    config_free(&c);
    /* ... and a config/cloob-server.conf there is picked up */
    char dir[600];
    snprintf(dir, sizeof dir, "%s/config", g_tmpdir);
    mkdir(dir, 0700);
    write_tmp("config/cloob-server.conf", "port = 4242\n");
    CHECK(load(&c, NULL, NULL, NULL) == CONFIG_OK);
    CHECK_EQ_INT(c.port, 4242);
    CHECK_STR(c.config_file, "config/cloob-server.conf");
    config_free(&c);
    CHECK(chdir(cwd) == 0);
}

static void test_help_table_version(void) {
    server_config c;
    char *text = NULL;
    const char *h[] = {"--bogus", "--help", NULL}; /* --help wins over bad flags */
    CHECK(load(&c, h, NULL, &text) == CONFIG_EXIT);
    for (size_t i = 0; i < config_key_count(); i++) {
        const config_key_info *k = config_key_at(i);
        char flag[96];
        snprintf(flag, sizeof flag, "--%s ", k->name);
        CHECK_MSG(text && strstr(text, flag), "help lacks %s", flag);
        CHECK_MSG(text && strstr(text, k->env), "help lacks %s", k->env);
    }
    CHECK(text && strstr(text, "default 8080") != NULL);
    CHECK(text && strstr(text, "--config PATH") != NULL);
    free(text);
    config_free(&c);

    const char *v[] = {"--version", NULL};
    CHECK(load(&c, v, NULL, &text) == CONFIG_EXIT);
    CHECK(text && strncmp(text, "cloob-server ", 13) == 0);
    free(text);

    const char *t[] = {"--print-config-table", NULL};
    CHECK(load(&c, t, NULL, &text) == CONFIG_EXIT);
    CHECK(text && strncmp(text, "| Key | Flag | Environment | Default | Meaning |\n", 49) == 0);
    int rows = 0;
    for (const char *p = text; p && (p = strstr(p, "\n| `")); p++) rows++;
    CHECK_EQ_INT(rows, (int)config_key_count() + 1); /* + the config row */
    CHECK(text && strstr(text, "| `max_body_bytes` | `--max_body_bytes` | `CLOOB_MAX_BODY_BYTES` | "
                               "`32MiB` |") != NULL);
    /* every row has exactly 6 unescaped pipes */
    int bad_rows = 0;
    for (const char *p = text; p && *p;) {
        const char *nl = strchr(p, '\n');
        int pipes = 0;
        for (const char *q = p; q < nl; q++)
            if (*q == '|' && (q == p || q[-1] != '\\')) pipes++;
        if (pipes != 6) bad_rows++;
        p = nl ? nl + 1 : NULL;
    }
    CHECK_EQ_INT(bad_rows, 0);
    free(text);
}

static void test_to_json(void) {
    server_config c;
    config_defaults(&c);
    CHECK(config_set(&c, "api_keys", "topsecret1,topsecret2", "t", g_err, sizeof g_err) == 0);
    CHECK(config_set(&c, "model_dir", "/m/\"quoted\"", "t", g_err, sizeof g_err) == 0);
    char *j = config_to_json(&c);
    CHECK(j != NULL);
    if (j) {
        CHECK(strstr(j, "topsecret") == NULL);
        cJSON *o = cJSON_Parse(j);
        CHECK(o != NULL);
        if (o) {
            CHECK_EQ_INT(cJSON_GetObjectItem(o, "port")->valuedouble, 8080);
            CHECK(cJSON_IsTrue(cJSON_GetObjectItem(o, "warmup")));
            CHECK(cJSON_IsTrue(cJSON_GetObjectItem(o, "auth_enabled")));
            CHECK_STR(cJSON_GetObjectItem(o, "api_keys")->valuestring, "<2 redacted>");
            CHECK_STR(cJSON_GetObjectItem(o, "model_dir")->valuestring, "/m/\"quoted\"");
            CHECK_STR(cJSON_GetObjectItem(o, "dtype")->valuestring, "float32");
            CHECK_STR(cJSON_GetObjectItem(o, "log_level")->valuestring, "info");
            CHECK_NEAR(cJSON_GetObjectItem(o, "max_body_bytes")->valuedouble, 33554432.0, 0);
            CHECK_NEAR(cJSON_GetObjectItem(o, "default_scale")->valuedouble, 100.0, 0);
            for (size_t i = 0; i < config_key_count(); i++)
                CHECK_MSG(cJSON_GetObjectItem(o, config_key_at(i)->name) != NULL, "%s",
                          config_key_at(i)->name);
            cJSON_Delete(o);
        }
        free(j);
    }
    config_free(&c);
}

/* The committed sample file is generated: it must match, and it must load cleanly. */
static void test_committed_config_file(void) {
    char *want = NULL;
    size_t wlen = 0;
    FILE *m = open_memstream(&want, &wlen);
    config_print_file(m);
    fclose(m);

    FILE *f = fopen("config/cloob-server.conf", "rb");
    CHECK_MSG(f != NULL, "run from the repository root: config/cloob-server.conf not found");
    if (f) {
        char *have = malloc(wlen + 2);
        size_t n = fread(have, 1, wlen + 1, f);
        fclose(f);
        CHECK_MSG(n == wlen && memcmp(have, want, wlen) == 0,
                  "config/cloob-server.conf is stale: regenerate it with "
                  "`build/cloob-server --print-config-file > config/cloob-server.conf`");
        free(have);
    }
    /* Every key appears, and uncommenting every "# key = value" line gives the defaults. */
    server_config c, d;
    config_defaults(&c);
    config_defaults(&d);
    char *un = malloc(wlen + 1);
    size_t o = 0;
    int keys_seen = 0;
    for (const char *p = want; *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        for (size_t i = 0; i < config_key_count(); i++) {
            const char *name = config_key_at(i)->name;
            size_t kl = strlen(name);
            if (n > kl + 5 && !strncmp(p, "# ", 2) && !strncmp(p + 2, name, kl) &&
                !strncmp(p + 2 + kl, " = ", 3)) {
                memcpy(un + o, p + 2, n - 2);
                o += n - 2;
                un[o++] = '\n';
                keys_seen++;
            }
        }
        p = nl ? nl + 1 : p + n;
    }
    un[o] = '\0';
    CHECK_EQ_INT(keys_seen, (int)config_key_count());
    CHECK_MSG(config_parse_text(&c, un, o, "sample", g_err, sizeof g_err) == 0, "%s", g_err);
    char *jc = config_to_json(&c), *jd = config_to_json(&d);
    CHECK(jc && jd && strcmp(jc, jd) == 0);
    free(jc);
    free(jd);
    free(un);
    free(want);
    config_free(&c);
    config_free(&d);
}

int main(void) {
    CHECK(mkdtemp(g_tmpdir) != NULL);
    test_defaults();
    test_set_kinds();
    test_cors();
    test_api_keys();
    test_file_syntax();
    test_precedence_and_flags();
    test_no_default_file();
    test_help_table_version();
    test_to_json();
    test_committed_config_file();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmpdir);
    TEST_MAIN_END();
}
