"""NEEMo: EMD estimates through the Kantorovich-Rubinstein dual with a Lipschitz network
(`estimate`), geometric fits of shapes to energy maps by the resulting min-max game
(`fit`), and the events and k-means baseline they are judged on (`events`)."""
