# llm_eval_report_html in a real browser: an evaluation run's page, written
# the documented way (psql -At), is opened by headless Chromium (Debian's
# chromium, from test/install_deps.sh; without it the test fails, it does not
# skip).  The page must render with nothing on the browser's console (no
# blocked fetch, no script, no error), show every variant, and keep markup
# from a case key and an output as text.  The page, the DOM Chromium made of
# it and the screenshot stay under tmp_check/eval_html/, which run_all.sh
# copies to test/artifacts/: look at the screenshot to see what was drawn.
use strict;
use warnings;

use File::Path qw(make_path);
use File::Temp qw(tempdir);
use IPC::Run;
use LlmextTest;
use PostgreSQL::Test::Utils;
use Test::More;

my @variants = ('base', 'json', 'broken');

my $node = LlmextTest::node('eval_html');
LlmextTest::wait_for_worker($node);
LlmextTest::create_extension($node);
$node->safe_psql(
	'postgres', q{
	SELECT llm_model_create('fail-400', 'fake', 'fail-400');
	SELECT llm_eval_set_create('html');
	SELECT llm_eval_cases_add('html', $$
		SELECT * FROM (VALUES ('k1', 'red apple', '"echo: red apple"'::jsonb),
							  ('k2', 'blue sky', '"B"'),
							  ('<script>alert(1)</script>', '<b>bold</b> & <script>x</script>',
							   '"echo: <b>bold</b> & <script>x</script>"')) AS t(key, input, expected)$$);
});
# base echoes, json answers {"echo": ...} (outputs that differ), broken fails
my $run = $node->safe_psql(
	'postgres', q{
	SELECT llm_eval_run('html',
		'[{"name": "base", "model": "echo"},
		  {"name": "json", "model": "echo", "options": {"response_format": {"type": "json_object"}}},
		  {"name": "broken", "model": "fail-400"}]', repeats => 2)});
is($node->safe_psql('postgres', "SELECT llm_eval_wait($run, '60 seconds') ->> 'state'"),
	'done', 'the run ends');

# the documented use: psql -Atc "SELECT llm_eval_report_html(N)" > file
my $dir = "$PostgreSQL::Test::Utils::tmp_check/eval_html";
make_path($dir);
my $html = "$dir/run$run.html";
my ($stdout, $stderr);
IPC::Run::run(
	[ 'psql', '-X', '-A', '-t', '-d', $node->connstr('postgres'),
		'-c', "SELECT llm_eval_report_html($run)" ],
	'>', $html, '2>', \$stderr)
  or die "psql: $stderr";
my $page = slurp_file($html);
like($page, qr/\A<!DOCTYPE html>\n/, 'the file is an HTML page');
unlike($page, qr/<script/i, 'the page has no script');

# Chromium wants a HOME it can write (the test runs as an unprivileged user)
my $chromium = `sh -c 'command -v chromium'`;
chomp $chromium;
ok($chromium ne '', 'chromium is installed (test/install_deps.sh installs it)')
  or BAIL_OUT('chromium is missing: run test/install_deps.sh');
local $ENV{HOME} = tempdir(DIR => $dir, CLEANUP => 1);
my @chromium = ($chromium, '--headless', '--no-sandbox', '--disable-gpu',
	'--enable-logging=stderr', '--v=0', '--window-size=1200,2000');

# the screenshot
my $png = "$dir/run$run.png";
unlink $png;
my $ok = IPC::Run::run([ @chromium, "--screenshot=$png", "file://$html" ],
	'>', \$stdout, '2>', \$stderr, IPC::Run::timeout(120));
ok($ok, 'chromium took the screenshot (exit code 0)') or diag($stderr);
# what the page wrote to the console, or what it was refused (a fetch, a
# script) would be a CONSOLE line
my @console = grep { /:CONSOLE/ } split /\n/, $stderr;
is(scalar @console, 0, 'nothing on the browser console while rendering')
  or diag(join "\n", @console);
ok(-f $png, "the screenshot is kept: $png");
my $bytes = -f $png ? slurp_file($png) : '';
is(substr($bytes, 0, 8), "\x89PNG\r\n\x1a\n", 'the screenshot is a PNG');
my ($width, $height) = length($bytes) >= 24 ? unpack('N2', substr($bytes, 16, 8)) : (0, 0);
is("${width}x$height", '1200x2000', 'of the window\'s size');
cmp_ok(length($bytes), '>', 20_000,
	'with something drawn on it (' . length($bytes) . ' bytes; a blank page is about 8 kB)');

# the DOM Chromium built from the page
$ok = IPC::Run::run([ @chromium, '--dump-dom', "file://$html" ],
	'>', \$stdout, '2>', \$stderr, IPC::Run::timeout(120));
ok($ok, 'chromium dumped the DOM (exit code 0)') or diag($stderr);
open my $fh, '>', "$dir/run$run.dom.html" or die $!;
print $fh $stdout;
close $fh;
like($stdout, qr{<title>Evaluation run $run</title>}, 'the DOM has the page\'s title');
for my $v (@variants)
{
	like($stdout, qr{<th scope="row">$v</th><td class="n">}, "variant $v has its row in the summary");
	like($stdout, qr{<g><title>$v: }, "variant $v is drawn in the charts");
	like($stdout, qr{<th>$v</th>}, "variant $v has its column in the matrix");
}
is(scalar(() = $stdout =~ /<svg /g), 3, 'the DOM has the three charts');
unlike($stdout, qr/<script|<b>bold/i, 'markup from the cases made no element');
like($stdout, qr{<th scope="row">&lt;script&gt;alert\(1\)&lt;/script&gt;</th>},
	'the case key is text');
like($stdout, qr{echo: &lt;b&gt;bold&lt;/b&gt; &amp; &lt;script&gt;x&lt;/script&gt;},
	'the output is text');
is(scalar(() = $stdout =~ /<tr class="differ">/g), 3, 'every case is highlighted: json differs from base');

$node->stop;
done_testing();
