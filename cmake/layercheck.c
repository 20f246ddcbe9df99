/* Linked with every object of one layer and nothing but the layers below
 * it (see sb_layer in the top CMakeLists.txt): if any code in the layer
 * calls upward, this program fails to link, and so does the build. */
int main(void)
{
    return 0;
}
