/* test-ima/vimlike: stands for vim, whose pkg_postinst and the old version's
 * pkg_postrm run the freshly merged binary (to rebuild the help tags). */
#include <stdio.h>

int main(int argc, char **argv)
{
	printf("vimlike ran:");
	for (int i = 1; i < argc; i++)
		printf(" %s", argv[i]);
	printf("\n");
	return 0;
}
