# llmext — build with PGXS.  `make && make install`, then see README.md.

EXTENSION = llmext
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control)

MODULE_big = llmext
OBJS = $(patsubst %.c,%.o,$(wildcard src/*.c src/*/*.c))

# The install script is assembled from one file per concept under sql/schema.
SCHEMA_PARTS = $(sort $(wildcard sql/schema/*.sql))
DATA_built = $(EXTENSION)--$(EXTVERSION).sql
# Earlier versions' install scripts (frozen) and the upgrade scripts between
# versions: ALTER EXTENSION llmext UPDATE follows them.
DATA = $(sort $(wildcard sql/versions/$(EXTENSION)--*.sql))

REGRESS = setup admin complete chat anthropic faults privileges ledger cache budgets usage prompts batch embed queue ratelimit identity limits secrets training finetune scorers eval eval_html eval_drift lifecycle feedback batch_api
# The suites run in an existing database that the background worker serves
# (llmext.databases); test/run_all.sh creates it.  setup creates the extension.
REGRESS_OPTS = --use-existing

PG_CONFIG ?= pg_config
PKG_CONFIG ?= pkg-config

PG_CPPFLAGS = -Isrc $(shell $(PKG_CONFIG) --cflags libcurl libcjson) -DEXTVERSION=\"$(EXTVERSION)\"
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers
ifdef WERROR
PG_CFLAGS += -Werror
endif
SHLIB_LINK = $(shell $(PKG_CONFIG) --libs libcurl libcjson)

EXTRA_CLEAN = test/unit/run_unit test/unit/*.o tmp_check

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

CONTRIB_TESTDB = llmext_regression

# Process-level tests: Perl TAP tests (test/t/*.pl) on PostgreSQL::Test::Cluster,
# which postgresql-server-dev-15 ships; they need prove and IPC::Run
# (libipc-run-perl).  `make prove_installcheck` runs them against the installed
# extension, each with its own nodes.  PROVE_TESTS picks some; TESTDIR is where
# tmp_check/ (logs, data directories) goes, the current directory by default.
# Not part of `make installcheck`, which stays the pg_regress suites.
PROVE_TESTS = $(sort $(wildcard test/t/*.pl))
PROVE_FLAGS += -I test/perl
TESTDIR ?= $(CURDIR)

.PHONY: prove_installcheck
prove_installcheck:
	rm -rf '$(TESTDIR)'/tmp_check
	$(MKDIR_P) '$(TESTDIR)'/tmp_check
	TESTDIR='$(TESTDIR)' PATH="$(bindir):$$PATH" PGPORT='6$(DEF_PGPORT)' \
	  PG_REGRESS='$(top_builddir)/src/test/regress/pg_regress' \
	  $(PROVE) $(PG_PROVE_FLAGS) $(PROVE_FLAGS) $(PROVE_TESTS)

# PGXS tracks no header dependencies: a changed struct must rebuild every user.
$(OBJS): $(wildcard src/*.h src/*/*.h)

$(EXTENSION)--$(EXTVERSION).sql: $(SCHEMA_PARTS) $(EXTENSION).control
	cat $(SCHEMA_PARTS) > $@

# Unit tests of the pure core: no server needed.
UNIT_SRCS = $(wildcard src/core/*.c src/providers/*.c)
unit: test/unit/run_unit
	test/unit/run_unit

test/unit/run_unit: test/unit/*.c test/unit/*.h $(UNIT_SRCS) $(wildcard src/core/*.h src/providers/*.h)
	$(CC) -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -g -Isrc \
		$(shell $(PKG_CONFIG) --cflags libcjson) -o $@ test/unit/*.c $(UNIT_SRCS) \
		$(shell $(PKG_CONFIG) --libs libcjson) -lm

.PHONY: unit
