/* libhello.so of test-ima/hellolib, loaded by /usr/bin/hello through its RUNPATH. */
const char *hello_greeting(void)
{
	return "hello from libhello";
}
