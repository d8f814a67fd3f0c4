#include "unit.h"

int			unit_passed = 0;
int			unit_failed = 0;

int
main(void)
{
	test_request();
	test_openai();
	test_anthropic();
	test_finetune();
	test_batch();
	test_cachekey();
	test_retry();
	test_bucket();
	test_template();
	test_jsonschema();
	test_secrets();
	test_score();
	test_stats();
	test_embed();
	printf("%d passed, %d failed\n", unit_passed, unit_failed);
	return unit_failed == 0 ? 0 : 1;
}
