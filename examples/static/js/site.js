document.querySelector("h1").title = "assetver example";
