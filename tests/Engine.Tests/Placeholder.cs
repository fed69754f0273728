namespace Engine.Tests; public class PlaceholderTests { [Fact] public void T() => Assert.True(true); }
